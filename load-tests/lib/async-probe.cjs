// Preloaded into the process under test by load-tests/async-count.mjs (`node --require`): counts the
// async resources it creates (promises, timers, nextTicks, immediates...) by type while recording,
// which SIGUSR2 toggles; when recording stops it writes the counts, and with ASYNC_PROBE_STACKS set,
// where every 50th promise and timer was made, to ASYNC_PROBE_OUT (JSON).
// Counts are exact and do not move with the machine's speed. With a hook installed V8 also makes
// the promise each `await` would otherwise elide, so awaits count twice.
const asyncHooks = require('node:async_hooks');
const fs = require('node:fs');

const SAMPLE_EVERY = 50;
const withStacks = Boolean(process.env.ASYNC_PROBE_STACKS);
let counts = {};
let stacks = {};
let recording = false;
let seen = 0;

function where() {
  return new Error().stack
    .split('\n')
    .slice(3)
    .filter((line) => !line.includes('node:internal/async_hooks') && !line.includes('async-probe'))
    .slice(0, 5)
    .map((line) => line.trim().replace(/^at /, '').replace(/\(.*\/(dist|node_modules)\//, '('))
    .join(' < ');
}

asyncHooks
  .createHook({
    init(_id, type) {
      if (!recording) return;
      counts[type] = (counts[type] ?? 0) + 1;
      if (withStacks && (type === 'PROMISE' || type === 'Timeout') && ++seen % SAMPLE_EVERY === 0) {
        const key = `${type}: ${where()}`;
        stacks[key] = (stacks[key] ?? 0) + SAMPLE_EVERY;
      }
    },
  })
  .enable();

process.on('SIGUSR2', () => {
  recording = !recording;
  if (recording) return;
  fs.writeFileSync(process.env.ASYNC_PROBE_OUT, JSON.stringify({ counts, stacks }));
  counts = {};
  stacks = {};
});
