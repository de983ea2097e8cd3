// Preloaded into the process under test by load-tests/gc-profile.mjs (`node --require`): observes GC
// pauses and samples allocations, collected objects included (node's --heap-prof keeps only what is
// still alive when it stops), in the phases SIGUSR2 steps through (below), and writes both to PROBE_OUT.
const fs = require('node:fs');
const inspector = require('node:inspector');
const { PerformanceObserver, constants } = require('node:perf_hooks');

const KINDS = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental marking',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak callbacks',
};
const pauses = {};
let recording = false;
new PerformanceObserver((list) => {
  if (!recording) return;
  for (const entry of list.getEntries()) {
    const kind = KINDS[entry.detail.kind] ?? String(entry.detail.kind);
    const p = (pauses[kind] ??= { count: 0, ms: 0, maxMs: 0 });
    p.count++;
    p.ms += entry.duration;
    p.maxMs = Math.max(p.maxMs, entry.duration);
  }
}).observe({ entryTypes: ['gc'] });

const session = new inspector.Session();
session.connect();
const post = (method, params) => new Promise((resolve, reject) => session.post(method, params, (err, result) => (err ? reject(err) : resolve(result))));

// SIGUSR2 steps through three phases: GC pauses are recorded (the process runs as it would), then
// allocations are sampled (the sampler costs CPU of its own), then both are written out.
let signals = 0;
process.on('SIGUSR2', () => {
  signals++;
  if (signals === 1) recording = true;
  else if (signals === 2) {
    recording = false;
    void post('HeapProfiler.enable').then(() =>
      post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true }),
    );
  } else if (signals === 3) {
    void post('HeapProfiler.stopSampling').then(({ profile }) => fs.writeFileSync(process.env.PROBE_OUT, JSON.stringify({ pauses, profile })));
  }
});
