// The load-test harness (issue 7): `npm run bench` (full, ~25 min) or `npm run bench -- --quick` (~2.5 min).
//   node load-tests/bench.mjs [--quick] [--only headline,many-keys,rejections,large-bodies,soak,workers,limits,clients]
//                             [--tool wrk|autocannon] [--rounds N] [--seconds N] [--connections N]
// Runs each scenario (scenarios/*.mjs) with its own processes, prints one progress line per case per
// round on stderr, prints the tables, and writes load-tests/RESULTS.md. Needs a built dist/ (npm run
// build) and redis-server; uses wrk, nginx and taskset when installed. Targets are reported, not
// asserted: the exit code is 1 only if a scenario failed to run.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chooseTool, toolVersion } from './lib/load.mjs';
import { hasCommand, pinning } from './lib/procs.mjs';
import { redisVersion } from './lib/redis.mjs';
import { targetsTable } from './lib/report.mjs';
import { nginxVersion, ROOT } from './lib/servers.mjs';
import * as headline from './scenarios/headline.mjs';
import * as manyKeys from './scenarios/many-keys.mjs';
import * as rejections from './scenarios/rejections.mjs';
import * as largeBodies from './scenarios/large-bodies.mjs';
import * as soak from './scenarios/soak.mjs';
import * as workers from './scenarios/workers.mjs';
import * as limits from './scenarios/limits.mjs';
import * as clients from './scenarios/clients.mjs';

const SCENARIOS = { headline, 'many-keys': manyKeys, rejections, 'large-bodies': largeBodies, soak, workers, limits, clients };

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    tool: { type: 'string' },
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    connections: { type: 'string' },
    output: { type: 'string', default: path.join(ROOT, 'load-tests/RESULTS.md') },
  },
});

// Full: 5 rounds of 10 s per case for the headline, 3 elsewhere, and a 5-minute soak. Quick: enough to
// see that everything works and roughly where it stands, in about two and a half minutes.
// Warm-up: a cold proxy compiles on the core it is pinned to; on a slow VM sluice took 8-10 s under
// this load to reach its steady cost, the floor 6-8 s (load-tests/warm-up.mjs), so 10 s each.
const MODES = {
  full: { rounds: 5, sideRounds: 3, seconds: 10, warmup: 10, connections: 50, soakSeconds: 300, soakWarmup: 10, manyKeys: 100_000 },
  quick: { rounds: 2, sideRounds: 1, seconds: 3, warmup: 5, connections: 50, soakSeconds: 20, soakWarmup: 5, manyKeys: 100_000 },
};
const mode = values.quick ? 'quick' : 'full';
const settings = {
  ...MODES[mode],
  mode,
  tool: chooseTool(values.tool),
  ...(values.rounds && { rounds: Number(values.rounds), sideRounds: Number(values.rounds) }),
  ...(values.seconds && { seconds: Number(values.seconds) }),
  ...(values.connections && { connections: Number(values.connections) }),
};
const selected = values.only ? values.only.split(',') : Object.keys(SCENARIOS);
for (const name of selected) if (!SCENARIOS[name]) throw new Error(`unknown scenario ${name}; one of ${Object.keys(SCENARIOS).join(', ')}`);

try {
  readFileSync(path.join(ROOT, 'dist/cli.js'));
} catch {
  console.error('dist/cli.js is missing: run `npm run build` first (npm run bench does).');
  process.exit(1);
}
if (!hasCommand('redis-server')) {
  console.error('redis-server is missing: apt-get install redis-server');
  process.exit(1);
}

const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
const nproc = spawnSync('nproc', { encoding: 'utf8' }).stdout.trim();
const gitRev = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
const gitDirty = spawnSync('git', ['-C', ROOT, 'status', '--porcelain', 'gateway/src'], { encoding: 'utf8' }).stdout.trim() !== '';
const environment = [
  `- date: ${new Date().toISOString()}`,
  `- mode: ${mode}${values.only ? ` (only ${selected.join(', ')})` : ''}; sluice at ${gitRev}${gitDirty ? ' + uncommitted changes in gateway/src' : ''}`,
  `- machine: ${nproc} cores (\`nproc\`), ${cpuModel}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, load average at start ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
  `- node ${process.version}, redis ${redisVersion()}, load tool ${settings.tool} ${toolVersion(settings.tool)}, nginx ${nginxVersion() ?? 'not installed'}`,
  `- pinning: ${pinning}`,
].join('\n');
console.error(`sluice bench, ${mode} mode, load tool ${settings.tool}\n${environment}\n`);

const started = Date.now();
const sections = [];
const allTargets = [];
let failed = false;
for (const name of selected) {
  const scenario = SCENARIOS[name];
  console.error(`== ${scenario.title}`);
  let section;
  try {
    const { markdown, targets } = await scenario.run(settings);
    allTargets.push(...targets);
    section = `## ${scenario.title}\n\n${markdown}\n`;
  } catch (err) {
    failed = true;
    console.error(`!! ${name} failed: ${err.stack ?? err}`);
    section = `## ${scenario.title}\n\n**Failed:** ${String(err.message ?? err).split('\n')[0]}\n`;
  }
  sections.push(section);
  console.log(`\n${section}`);
}

const minutes = ((Date.now() - started) / 60_000).toFixed(1);
const targets = `## Targets (reported, not asserted)\n\n${targetsTable(allTargets)}\n`;
console.log(targets);
const doc = [
  '# sluice load-test results',
  '',
  `Written by \`load-tests/bench.mjs\` (${mode} run, ${minutes} min). How to read it: load-tests/README.md.`,
  '',
  environment,
  '',
  targets,
  ...sections,
].join('\n');
writeFileSync(values.output, doc);
console.error(`\nwrote ${path.relative(process.cwd(), values.output)} (${minutes} min)`);
process.exit(failed ? 1 : 0);
