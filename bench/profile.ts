// Where pf's CPU goes on the write path: a one-host cluster with a one-extent volume (one primary
// SDS, one secondary), one fio job, and per role (SDC, primary SDS, secondary SDS):
//   - CPU µs per IO (from /proc), and syscalls per IO by name (strace -c -f for a few seconds);
//   - with PROFILE_CPU=1, a bun --cpu-prof profile of every role (BUN_OPTIONS), summarised as the
//     top functions by self time.
// Run: npm run build && npx bun bench/profile.ts
// Env: PROFILE_JOB (fio args, default "--rw=randwrite --bs=4k --iodepth=16"), PROFILE_SECONDS (10),
//      PROFILE_WRITE_CACHE (writeBack|writeThrough), PROFILE_CPU=1, PROFILE_TOP (25),
//      PROFILE_PERF=1 (perf record -e cpu-clock of each role instead of strace: native and
//      kernel symbols by self time; JIT code shows as one [JIT] bucket), PROFILE_KEEP=1 (keep the
//      profile directory), PROFILE_STAT=1 (perf stat of each role instead of strace: syscalls and
//      context switches per IO with no tracer slowing the run; also the SDC's epoll wakeups).
//      Each role's resident memory (now, peak) is printed after the CPU run.

import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestCluster } from "../test/helpers/cluster.ts";
import { run, runFio } from "../test/helpers/real_clients.ts";
import { cpuSecondsOf } from "./proc_cpu.ts";

const job = (process.env.PROFILE_JOB ?? "--rw=randwrite --bs=4k --iodepth=16").split(" ");
const seconds = Number(process.env.PROFILE_SECONDS ?? 10);
const mode = process.env.PROFILE_WRITE_CACHE ?? "writeBack";
const cpuProf = process.env.PROFILE_CPU === "1";
const top = Number(process.env.PROFILE_TOP ?? 25);
const perfRec = process.env.PROFILE_PERF === "1";
const perfStat = process.env.PROFILE_STAT === "1";

/** context switches per thread of a process, keyed "tid name vol" / "tid name invol" (/proc) */
function threadSwitches(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const st = readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8");
      const name = /^Name:\s+(.*)$/m.exec(st)?.[1] ?? "?";
      const v = Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(st)?.[1] ?? 0);
      const nv = Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(st)?.[1] ?? 0);
      out.set(`${tid} ${name} vol`, v);
      out.set(`${tid} ${name} invol`, nv); // preempted: the other load on the machine
    } catch {
      // the thread ended
    }
  }
  return out;
}

/** syscalls, context switches and epoll waits of one process over `secs` (perf stat, no tracer) */
async function perfStatOf(pid: number, secs: number): Promise<Map<string, number>> {
  const events = ["raw_syscalls:sys_enter", "context-switches", "syscalls:sys_enter_epoll_pwait2", "syscalls:sys_enter_sendto", "syscalls:sys_enter_recvfrom", "syscalls:sys_enter_pread64"];
  const r = await run(["perf", "stat", "-x", ",", "-e", events.join(","), "-p", String(pid), "--", "sleep", String(secs)], { timeoutMs: (secs + 30) * 1000 });
  const out = new Map<string, number>();
  for (const line of r.stderr.split("\n")) {
    const f = line.split(",");
    if (f.length > 3 && /^\d+$/.test(f[0]!)) out.set(f[2]!.replace(/^(raw_)?syscalls:(sys_enter_)?/, ""), Number(f[0]));
  }
  return out;
}

/** resident memory now and at its peak (/proc/PID/status VmRSS, VmHWM) */
function memOf(pid: number): string {
  const st = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(st)?.[1] ?? NaN);
  return `RSS ${(kb("VmRSS") / 1024).toFixed(0)} MiB (peak ${(kb("VmHWM") / 1024).toFixed(0)} MiB)`;
}

async function perfProfile(pid: number, secs: number, out: string): Promise<string> {
  await run(["perf", "record", "-e", "cpu-clock", "-F", "2000", "-o", out, "-p", String(pid), "--", "sleep", String(secs)], { timeoutMs: (secs + 30) * 1000 });
  const byDso = await run(["perf", "report", "-i", out, "--no-children", "--sort", "dso", "--stdio"], { timeoutMs: 120_000 });
  const dsos = byDso.stdout
    .split("\n")
    .filter((l) => /^\s+\d/.test(l))
    .slice(0, 6)
    .map((l) => l.trim().replace(/\s+/g, " "))
    .join(", ");
  const r = await run(["perf", "report", "-i", out, "--no-children", "--sort", "dso,sym", "--stdio"], { timeoutMs: 120_000 });
  return `  by object: ${dsos}\n` + r.stdout
    .split("\n")
    .filter((l) => /^\s+\d/.test(l))
    .slice(0, top)
    .join("\n");
}

interface ProfNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: ProfNode[];
  samples: number[];
  timeDeltas: number[];
}

function summarise(file: string): string[] {
  const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i]!);
    if (!n) continue;
    const dt = p.timeDeltas[i] ?? 0;
    const f = n.callFrame;
    const key = `${f.functionName || "(anonymous)"} ${f.url.replace(/^.*\/src\//, "src/").replace(/^\/\$bunfs\/root\//, "")}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  }
  const idle = [...self].filter(([k]) => /^\(idle\)|^\(program\)/.test(k)).reduce((s, [, v]) => s + v, 0);
  const rows = [...self].sort((a, b) => b[1] - a[1]).slice(0, top);
  return [`  total ${(total / 1e6).toFixed(2)} s sampled, idle/program ${((100 * idle) / total).toFixed(0)} %`, ...rows.map(([k, v]) => `  ${((100 * v) / total).toFixed(1).padStart(5)} %  ${k}`)];
}

async function straceCount(pid: number, secs: number): Promise<Map<string, number>> {
  const r = await run(["timeout", "-s", "INT", String(secs), "strace", "-c", "-f", "-p", String(pid)], { timeoutMs: (secs + 10) * 1000 });
  const out = new Map<string, number>();
  for (const line of r.stderr.split("\n")) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
    if (m) out.set(m[2]!, Number(m[1]));
  }
  return out;
}

async function main(): Promise<void> {
  const profDir = mkdtempSync(join(tmpdir(), "pf-prof-"));
  const c = await TestCluster.create({
    deviceSize: "512MiB",
    extentSize: "64MiB",
    granularity: "64MiB",
    volumes: [{ name: "one", size: "64MiB" }],
    env: cpuProf ? { BUN_OPTIONS: `--cpu-prof --cpu-prof-dir=${profDir}` } : {},
  });
  try {
    await c.start();
    await c.login();
    if (mode !== "writeBack") {
      const r = await c.scli(["--set_storage_pool_write_cache", "--protection_domain_name", "pd1", "--storage_pool_name", "sp1", "--write_cache", mode]);
      if (r.code !== 0) throw new Error(r.stderr);
      await Bun.sleep(2500);
    }
    const uri = c.nbdUri("one");
    await runFio(["--name=fill", "--ioengine=nbd", `--uri=${uri}`, "--rw=write", "--bs=1M", "--iodepth=8", "--size=64MiB"], { timeoutMs: 120_000 });
    const pids = new Map<string, number>([
      ["sdc", c.pidOf("sdc")],
      ["sds1", c.pidOf("sds sds1")],
      ["sds2", c.pidOf("sds sds2")],
      ["sds3", c.pidOf("sds sds3")],
    ]);
    // CPU run (no tracer attached)
    const before = new Map([...pids].map(([k, p]) => [k, cpuSecondsOf(p)]));
    const f = await runFio(["--name=p", "--ioengine=nbd", `--uri=${uri}`, ...job, `--runtime=${seconds}`, "--time_based", "--size=64MiB", "--randrepeat=0"], { timeoutMs: (seconds + 60) * 1000 });
    const j = f.json.jobs[0]!;
    const ios = j.write.io_bytes > 0 ? (j.write as unknown as { total_ios: number }).total_ios : (j.read as unknown as { total_ios: number }).total_ios;
    const iops = j.write.iops + j.read.iops;
    const cpu = new Map([...pids].map(([k, p]) => [k, (1e6 * (cpuSecondsOf(p) - before.get(k)!)) / ios]));
    const ranked = ["sds1", "sds2", "sds3"].sort((a, b) => cpu.get(b)! - cpu.get(a)!);
    const roleOf = new Map<string, string>([
      ["sdc", "SDC"],
      [ranked[0]!, "primary SDS"],
      [ranked[1]!, "secondary SDS"],
    ]);
    process.stdout.write(`job ${job.join(" ")} (${mode}): ${Math.round(iops)} IOPS\n`);
    for (const [k, label] of roleOf) process.stdout.write(`  ${label} (${k}): ${cpu.get(k)!.toFixed(1)} CPU µs per IO; ${memOf(pids.get(k)!)}\n`);
    // syscalls per IO, with strace attached (slower; counts only)
    if (perfRec) {
      const fio = Bun.spawn(["fio", "--name=s", "--ioengine=nbd", `--uri=${uri}`, ...job, `--runtime=${seconds + 4}`, "--time_based", "--size=64MiB", "--randrepeat=0"], { stdout: "ignore", stderr: "ignore" });
      await Bun.sleep(1000);
      const reports = await Promise.all([...roleOf.keys()].map((k) => perfProfile(pids.get(k)!, Math.min(5, seconds), join(profDir, `${k}.perf`))));
      await fio.exited;
      [...roleOf].forEach(([, label], i) => process.stdout.write(`\n${label} (perf, self time):\n${reports[i]}\n`));
    } else if (perfStat) {
      const fio = Bun.spawn(["fio", "--name=s", "--ioengine=nbd", `--uri=${uri}`, ...job, `--runtime=${seconds + 4}`, "--time_based", "--size=64MiB", "--randrepeat=0", "--output-format=json"], { stdout: "pipe", stderr: "ignore" });
      await Bun.sleep(1000);
      const secs = Math.min(5, seconds);
      const threadsBefore = [...roleOf.keys()].map((k) => threadSwitches(pids.get(k)!));
      const counts = await Promise.all([...roleOf.keys()].map((k) => perfStatOf(pids.get(k)!, secs)));
      const threadsAfter = [...roleOf.keys()].map((k) => threadSwitches(pids.get(k)!));
      const text = await new Response(fio.stdout).text();
      await fio.exited;
      const sj = JSON.parse(text.slice(text.indexOf("{"))) as { jobs: { write: { iops: number }; read: { iops: number } }[] };
      const statIops = sj.jobs[0]!.write.iops + sj.jobs[0]!.read.iops;
      [...roleOf].forEach(([, label], i) => {
        const per = (n: number) => (n / (statIops * secs)).toFixed(2);
        process.stdout.write(`  ${label}: per IO ${[...counts[i]!].map(([n, v]) => `${n} ${per(v)}`).join(", ")} [${Math.round(statIops)} IOPS during perf stat]\n`);
        // which threads switch: a helper thread woken per IO doubles the wakeups
        const busy = [...threadsAfter[i]!].map(([t, n]) => [t, n - (threadsBefore[i]!.get(t) ?? 0)] as const).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]).slice(0, 6);
        process.stdout.write(`    context switches per IO by thread: ${busy.map(([t, n]) => `${t} ${per(n)}`).join(", ")}\n`);
      });
    } else if (!cpuProf) {
      const fio = Bun.spawn(["fio", "--name=s", "--ioengine=nbd", `--uri=${uri}`, ...job, `--runtime=${seconds + 4}`, "--time_based", "--size=64MiB", "--randrepeat=0", "--output-format=json"], { stdout: "pipe", stderr: "ignore" });
      await Bun.sleep(1000);
      const counts = await Promise.all([...roleOf.keys()].map((k) => straceCount(pids.get(k)!, Math.min(5, seconds))));
      const text = await new Response(fio.stdout).text();
      await fio.exited;
      const sj = JSON.parse(text.slice(text.indexOf("{"))) as { jobs: { write: { iops: number }; read: { iops: number } }[] };
      const straceIops = sj.jobs[0]!.write.iops + sj.jobs[0]!.read.iops;
      const secs = Math.min(5, seconds);
      [...roleOf].forEach(([, label], i) => {
        const m = counts[i]!;
        const total = [...m.values()].reduce((s, x) => s + x, 0);
        const per = (n: number) => (n / (straceIops * secs)).toFixed(2);
        const rows = [...m].sort((a, b) => b[1] - a[1]).slice(0, 8);
        process.stdout.write(`  ${label}: ${per(total)} syscalls per IO (${rows.map(([n, v]) => `${n} ${per(v)}`).join(", ")}) [under strace: ${Math.round(straceIops)} IOPS]\n`);
      });
    }
    for (const [k, label] of roleOf) {
      if (k === "sdc") continue;
      const i = Number(k.slice(3)) - 1;
      const st = (await (await fetch(`${c.sdsControlUrl(i)}/status`)).json()) as { writeCache?: { groupCommit: unknown } };
      process.stdout.write(`  ${label} group commit: ${JSON.stringify(st.writeCache?.groupCommit)}\n`);
    }
  } finally {
    await c.stop();
    await Bun.sleep(500);
  }
  if (cpuProf) {
    for (const file of readdirSync(profDir)) {
      const pid = Number(/\.(\d+)\.\d+\.\d+\.cpuprofile$/.exec(file)?.[1] ?? /CPU\.\d+\.\d+\.(\d+)\./.exec(file)?.[1]);
      const label = [...["sdc", "sds sds1", "sds sds2", "sds sds3", "mdm"]].find((l) => {
        try {
          return c.pidOf(l) === pid;
        } catch {
          return false;
        }
      });
      process.stdout.write(`\n${label ?? "?"} (pid ${pid}, ${file}):\n${summarise(join(profDir, file)).join("\n")}\n`);
    }
  }
  await c.destroy();
  if (process.env.PROFILE_KEEP === "1") console.log(`profiles kept in ${profDir}`);
  else rmSync(profDir, { recursive: true, force: true });
}

await main();
