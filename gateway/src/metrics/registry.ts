import { Counter, Gauge, Registry } from 'prom-client';

// Every metric name and label is declared here, and only here. Labels stay low-cardinality:
// tier and route names, never keys or paths.

export const registry = new Registry();

export const rateLimitDecisions = new Counter({
  name: 'sluice_ratelimit_decisions_total',
  help: 'Rate-limit decisions, by tier and outcome (allowed | limited).',
  labelNames: ['tier', 'outcome'] as const,
  registers: [registry],
});

export const rateLimitFallbackActive = new Gauge({
  name: 'sluice_ratelimit_fallback_active',
  help: '1 while this replica limits without Redis (failure policy in force), else 0.',
  registers: [registry],
});

export const rateLimitFallbackEngaged = new Counter({
  name: 'sluice_ratelimit_fallback_engaged_total',
  help: 'Times this replica switched to its failure policy after consecutive Redis failures.',
  registers: [registry],
});

export const configReloads = new Counter({
  name: 'sluice_config_reloads_total',
  help: 'Config reloads (SIGHUP or file change), by result (ok | failed).',
  labelNames: ['result'] as const,
  registers: [registry],
});

export const failedKeyBlocks = new Counter({
  name: 'sluice_failed_key_blocks_total',
  help: 'Requests refused with too_many_failed_attempts (client address over the failed-key limit).',
  registers: [registry],
});
