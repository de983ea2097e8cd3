// Builds k8s/overlays/monitoring/prometheusrule.yaml (prometheus-operator) from deploy/prometheus/alerts.yml, so the alert
// rules exist once. `npm run k8s:rules` rewrites it; a test fails when the two drift apart.
//   node scripts/prometheusrule.mjs [--check]
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'yaml';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const source = path.join(root, 'deploy/prometheus/alerts.yml');
const target = path.join(root, 'k8s/overlays/monitoring/prometheusrule.yaml');

export function buildPrometheusRule(alertsText) {
  const { groups } = parse(alertsText);
  const rule = {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: { name: 'sluice', labels: { 'app.kubernetes.io/name': 'sluice' } },
    spec: { groups },
  };
  return `# Generated from deploy/prometheus/alerts.yml by scripts/prometheusrule.mjs — edit that file, then npm run k8s:rules.\n${stringify(rule, { lineWidth: 0 })}`;
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const built = buildPrometheusRule(readFileSync(source, 'utf8'));
  if (process.argv.includes('--check')) {
    const current = readFileSync(target, 'utf8');
    if (current !== built) {
      console.error('k8s/overlays/monitoring/prometheusrule.yaml is out of date: run npm run k8s:rules');
      process.exit(1);
    }
  } else {
    writeFileSync(target, built);
  }
}
