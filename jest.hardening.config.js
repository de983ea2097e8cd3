// The hardening suites (faults under load, protocol fuzzing, leaks, secrets): `npm run test:faults`.
// Kept out of `npm test` because they run minutes of load; .ci/run runs them too.
const base = require('./jest.config.js');

/** @type {import('jest').Config} */
module.exports = {
  ...base,
  testPathIgnorePatterns: [],
  roots: ['<rootDir>/gateway/test/hardening'],
  testTimeout: 300000,
  // One suite at a time: each one loads both cores, and its figures must not include another's load.
  maxWorkers: 1,
};
