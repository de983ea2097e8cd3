// Plain JS config: a .ts config would need ts-node on Node 20.
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/gateway/test'],
  testMatch: ['**/*.test.ts'],
  // The hardening suites run minutes of load: `npm run test:faults` (jest.hardening.config.js).
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/gateway/test/hardening/'],
  transform: {
    '^.+\\.ts$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } }],
  },
  testTimeout: 60000,
  // Integration suites start real processes; two workers match the two cores.
  maxWorkers: 2,
};
