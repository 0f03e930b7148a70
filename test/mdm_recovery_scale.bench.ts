// Scale probe of the recovery planner (not a test): N SDSs (default 100), one thin volume of GB
// GiB (default 1280 = 20480 extents), then the cost of a steady planner step, of the step that
// degrades one lost SDS's extents, and of the one that starts their rebuilds.
// Run: N=100 GB=1280 npx bun run test/mdm_recovery_scale.bench.ts
import consola from "consola";
import { RecoveryCluster } from "./mdm_recovery_fixture.ts";
const c = await RecoveryCluster.open({ recovery: { heartbeatTimeoutMs: 2000, rebuildGraceMs: 10000 } });
const N = Number(process.env.N ?? 100);
for (let i = 1; i <= N; i++) await c.addSds(`sds${i}`, { devicesGiB: [1000] });
const t0 = performance.now();
await c.createVolume("v1", Number(process.env.GB ?? 1280));
consola.log(`create ${(performance.now() - t0).toFixed(0)} ms, extents ${c.extents().length}`);
c.checkInvariants = () => undefined;
c.tick(); c.tick();
let t = performance.now(); c.tick(); consola.log(`steady tick ${(performance.now() - t).toFixed(1)} ms`);
c.alive.delete("sds7");
c.m.clock.advance(2000); await c.beatAll();
t = performance.now(); const r = c.tick(); consola.log(`degrade tick ${(performance.now() - t).toFixed(1)} ms, ${r.changed} changes`);
t = performance.now(); c.tick(); consola.log(`degraded steady tick ${(performance.now() - t).toFixed(1)} ms`);
c.m.clock.advance(10000); await c.beatAll();
t = performance.now(); const r2 = c.tick(); consola.log(`rebuild start tick ${(performance.now() - t).toFixed(1)} ms, ${r2.changed} changes`);
t = performance.now(); await c.status(); consola.log(`queryRebuild ${(performance.now() - t).toFixed(1)} ms`);
c.close();
