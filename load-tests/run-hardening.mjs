#!/usr/bin/env node
// `npm run test:faults [-- jest args]`: runs the hardening suites (jest.hardening.config.js) from a
// clean results directory, then regenerates load-tests/RELIABILITY.md from what they recorded.
// Exits with jest's status, so a failed case fails the run even though the table is still written.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
// A run of some suites only (a path filter) keeps the other suites' rows from an earlier run.
if (!args.some((a) => !a.startsWith('-'))) rmSync(path.join(root, 'load-tests/reliability/results'), { recursive: true, force: true });

const jest = spawnSync(process.execPath, [path.join(root, 'node_modules/jest/bin/jest.js'), '-c', 'jest.hardening.config.js', ...args], {
  cwd: root,
  stdio: 'inherit',
});
const report = spawnSync(process.execPath, [path.join(root, 'load-tests/reliability-report.mjs')], { cwd: root, stdio: 'inherit' });
process.exit(jest.status !== 0 ? (jest.status ?? 1) : (report.status ?? 1));
