// Assembles one SDS without the MDM: devices -> metadata -> extent store -> node -> data-plane
// server. runSds (main.ts) uses it after joining; tests use it directly with an injected data
// key and assignments, to run 2-3 SDSs in one process.
//
// Invariants: the server only serves once the store is loaded (and the node only once
// assignments are applied and a lease is held: see sds_node.ts); stop() closes the listener and
// peer links before persisting versions and closing metadata and devices, so no IO runs on a
// closed file.

import { statSync } from "node:fs";
import { consola } from "consola";
import { PfError } from "../proto/errors.ts";
import { Limits } from "../proto/limits.ts";
import { ioMetricsEnabled } from "../proto/io_meter.ts";
import { MetricRegistry } from "../proto/metrics.ts";
import { openBlockDevice, type BlockDevice } from "../store/block_device.ts";
import { SdsMeta } from "../store/sds_meta.ts";
import type { DataPlaneTlsMaterial } from "../proto/dataplane_tls.ts";
import { DataPlaneServer } from "./dataplane_server.ts";
import { MeteredDevice } from "./device_meter.ts";
import { ExtentStore } from "./extent_store.ts";
import type { SdsClock } from "./sds_clock.ts";
import { SdsMetrics } from "./sds_metrics.ts";
import { SdsNode, type SdsNodeOptions } from "./sds_node.ts";

export interface SdsCoreDevice {
  /** the MDM's id for the device (assignments name it) */
  deviceId: string;
  path: string;
  /** create and preallocate the file with this size when missing */
  sizeBytes?: number;
}

export interface SdsCoreOptions {
  sdsId: string;
  /** the MDM's id (its consistency check connects under it) */
  mdmId?: string;
  dataDir: string;
  host: string;
  /** 0 = any free port */
  port: number;
  devices: SdsCoreDevice[];
  maxInFlightPerConn?: number;
  maxInFlightBytesPerConn?: number;
  /** a server already listening (runSds listens before it joins); default: listen here */
  server?: DataPlaneServer;
  /** devices already opened (runSds opens them to report capacity), by path */
  opened?: Map<string, BlockDevice>;
  /** wrap each device (tests: a FaultInjectingDevice) */
  wrapDevice?: (dev: BlockDevice) => BlockDevice;
  /** monotonic clock for leases and copy throttling (tests: a fake) */
  clock?: SdsClock;
  /** where the SDS's metric families go (runSds: the process registry its control port serves) */
  registry?: MetricRegistry;
  /** the host rebooted since this SDS last ran (its page cache is gone) */
  hostRebooted?: boolean;
  /** bounds of the hold of forwarded frames ahead of the assignments (tests: smaller) */
  epochHold?: SdsNodeOptions["epochHold"];
  /** data-plane TLS: serve and connect to peers only over TLS with this node certificate */
  tls?: DataPlaneTlsMaterial;
}

export interface SdsCore {
  readonly sdsId: string;
  readonly port: number;
  readonly node: SdsNode;
  readonly store: ExtentStore;
  readonly server: DataPlaneServer;
  readonly metrics: SdsMetrics;
  /** Open a device the MDM registered while this SDS runs (it must exist: a block device or a file); throws PfError naming the path. */
  addDevice(deviceId: string, path: string): void;
  /** Stop using a device the MDM removed; false while an extent still lives on it. */
  removeDevice(deviceId: string): boolean;
  stop(): Promise<void>;
}

export function startSdsCore(opts: SdsCoreOptions): SdsCore {
  const devices: { deviceId: string; dev: BlockDevice }[] = [];
  let meta: SdsMeta | null = null;
  const metrics = new SdsMetrics(opts.registry ?? new MetricRegistry(), opts.sdsId);
  try {
    const wrapped = (deviceId: string, path: string, opened: BlockDevice) => {
      // metering outermost: an injected fault counts as a device error, like a real one
      const dev = opts.wrapDevice ? opts.wrapDevice(opened) : opened;
      return { deviceId, dev: ioMetricsEnabled ? new MeteredDevice(dev, metrics.device(deviceId, path)) : dev };
    };
    for (const d of opts.devices) devices.push(wrapped(d.deviceId, d.path, opts.opened?.get(d.path) ?? openBlockDevice({ path: d.path, sizeBytes: d.sizeBytes })));
    meta = SdsMeta.openIn(opts.dataDir);
    const storedId = meta.getKey("sds_id");
    if (storedId !== null && storedId !== opts.sdsId) {
      consola.warn(`sds: data dir ${opts.dataDir} belonged to SDS ${storedId}, now joined as ${opts.sdsId}`);
    }
    meta.setKey("sds_id", opts.sdsId);
    const store = ExtentStore.open(meta, devices, { hostRebooted: opts.hostRebooted ?? false });
    const tls = opts.tls;
    const node = new SdsNode({ sdsId: opts.sdsId, mdmId: opts.mdmId, store, clock: opts.clock, metrics, epochHold: opts.epochHold, ...(tls === undefined ? {} : { peerTls: () => tls }) });
    const server = opts.server ?? DataPlaneServer.listen({ host: opts.host, port: opts.port, maxInFlightPerConn: opts.maxInFlightPerConn, maxInFlightBytesPerConn: opts.maxInFlightBytesPerConn });
    if (tls !== undefined) server.setTls(tls);
    server.attach(node.access, node);
    const m = meta;
    let stopped = false;
    /** removed devices whose last syncs still run (closed then, or at stop) */
    const closing = new Set<BlockDevice>();
    return {
      sdsId: opts.sdsId,
      port: server.port,
      node,
      store,
      server,
      metrics,
      addDevice(deviceId: string, path: string) {
        // the same disk under another name (a symlink, /dev/disk/by-id): two slots, two allocators
        const id = diskIdentity(path);
        const twin = id === null ? undefined : store.slots.find((o) => diskIdentity(o.dev.path) === id);
        if (twin !== undefined) throw new PfError("IN_USE", `device ${path} is the disk this SDS already serves as ${twin.dev.path} (device ${twin.deviceId})`);
        const d = wrapped(deviceId, path, openBlockDevice({ path }));
        try {
          refuseDeviceInUse(path, d.dev);
          store.addDevice(deviceId, d.dev);
        } catch (e) {
          d.dev.close();
          throw e;
        }
        devices.push(d); // closed at stop, like the others
      },
      removeDevice(deviceId: string) {
        const slot = store.slot(deviceId);
        if (!store.removeDevice(deviceId)) return false;
        // out of use: closed (its lock and, for a disk, its O_EXCL claim go with the descriptor,
        // so the path may be added again or given to another SDS) once no sync of it runs or
        // waits: a FLUSH that began before the removal still counts on it. Asynchronous IO in
        // flight on it holds the descriptors open by itself (FileBlockDevice.close).
        const i = devices.findIndex((d) => d.deviceId === deviceId);
        if (i < 0) return true;
        const [d] = devices.splice(i, 1);
        closing.add(d!.dev);
        const closeIfIdle = (): boolean => {
          if (slot !== undefined && slot.commit.busy && !stopped) return false;
          closing.delete(d!.dev);
          d!.dev.close();
          return true;
        };
        if (!closeIfIdle()) {
          const t = setInterval(() => closeIfIdle() && clearInterval(t), 20);
          t.unref();
        }
        return true;
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        server.stop();
        node.close();
        await store.stop();
        try {
          store.persistVersions();
        } finally {
          m.close();
          for (const d of devices) d.dev.close();
          for (const dev of closing) dev.close();
        }
      },
    };
  } catch (e) {
    meta?.close();
    for (const d of devices) if (!opts.opened?.has(d.dev.path)) d.dev.close();
    throw e;
  }
}

/** bytes at the start of a device that must read as zeros before it is taken (see refuseDeviceInUse) */
const IN_USE_PROBE_BYTES = 1024 * 1024;

/**
 * A device added live comes by a path an MDM user gave: the SDS would write extents over
 * whatever it holds. One whose first MiB is not all zeros (a file system's superblock, a
 * partition table, another SDS's data, any file with content) is refused, as PowerFlex refuses
 * a device in use without --force_device_takeover.
 */
function refuseDeviceInUse(path: string, dev: BlockDevice): void {
  const n = Math.min(IN_USE_PROBE_BYTES, dev.sizeBytes);
  if (n < Limits.thinChunkBytes) throw new PfError("BAD_REQUEST", `device ${path} is ${dev.sizeBytes} bytes: too small to hold one ${Limits.thinChunkBytes}-byte chunk`);
  const buf = new Uint8Array(n);
  dev.readInto(buf, 0);
  const words = new Int32Array(buf.buffer, 0, n >>> 2);
  for (let i = 0; i < words.length; i++) {
    if (words[i] !== 0) throw new PfError("IN_USE", `device ${path} holds data in its first MiB (a file system, a partition table, another SDS's data?): pf takes only an empty device; wipe it first (e.g. blkdiscard, or dd if=/dev/zero of=${path} bs=1M count=1)`);
  }
}

/** What names one disk whatever the path: a block device's number, a file's device and inode (no path: null, never equal). */
function diskIdentity(path: string): string | null {
  try {
    const st = statSync(path); // follows symlinks
    return st.isBlockDevice() ? `b:${st.rdev}` : `f:${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
}
