// Preloaded into the soak's sluice (`node --require`): after each mark-compact, the old space's live
// bytes, appended to HEAP_AFTER_GC_OUT. What a leak grows; RSS also follows the young generation,
// which V8 sizes up and down under load.
const fs = require('node:fs');
const v8 = require('node:v8');
const { PerformanceObserver, constants } = require('node:perf_hooks');

const out = process.env.HEAP_AFTER_GC_OUT;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    if (entry.detail.kind !== constants.NODE_PERFORMANCE_GC_MAJOR) continue;
    const old = v8.getHeapSpaceStatistics().find((space) => space.space_name === 'old_space');
    fs.appendFileSync(out, `${Date.now()} ${old.space_used_size}\n`);
  }
}).observe({ entryTypes: ['gc'] });
