import { METHODS } from 'node:http';
import { ConfigError, parseConfig } from '../../src/config/loader';
import { STANDARD_METHODS } from '../../src/config/methods';

const config = (methods: string[], allowCustom?: string[]) =>
  `${allowCustom ? `allow_custom_methods: ${JSON.stringify(allowCustom)}\n` : ''}` +
  'tiers:\n  free: { limits: [{ requests: 60, per: 1m }] }\nupstreams:\n  u: { targets: ["http://127.0.0.1:9001"] }\n' +
  `routes:\n  - { name: r, match: { path_prefix: /r, methods: ${JSON.stringify(methods)} }, upstream: u }\n`;

function problems(text: string): string[] {
  try {
    parseConfig(text, {});
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
}

const nonStandard = METHODS.filter((m) => !STANDARD_METHODS.includes(m) && m !== 'CONNECT');

describe('route methods', () => {
  test.each(STANDARD_METHODS)('standard %s is accepted as is', (method) => {
    expect(problems(config([method]))).toEqual([]);
  });

  test.each(nonStandard)('%s (not standard) is refused unless listed in allow_custom_methods', (method) => {
    expect(problems(config([method]))).toEqual([
      expect.stringMatching(new RegExp(`^routes\\[0\\]\\.match\\.methods\\[0\\]: '${method}' is not a standard HTTP method .*allow_custom_methods`)),
    ]);
    expect(problems(config([method], [method]))).toEqual([]);
  });

  test.each(['FETCH', 'BREW', 'X-CUSTOM'])('%s, which the HTTP parser refuses, is refused even in allow_custom_methods', (method) => {
    const found = problems(config([method], [method]));
    expect(found).toContainEqual(expect.stringMatching(new RegExp(`^allow_custom_methods\\[0\\]: '${method}' can never reach a route`)));
    expect(found).toContainEqual(expect.stringMatching(new RegExp(`^routes\\[0\\]\\.match\\.methods\\[0\\]: '${method}' can never reach a route`)));
  });

  test.each([...STANDARD_METHODS, ...nonStandard].map((m) => m.toLowerCase()))('lowercase %s is refused with the right spelling', (method) => {
    expect(problems(config([method], nonStandard))).toEqual([
      `routes[0].match.methods[0]: methods are case-sensitive (RFC 9110): write '${method.toUpperCase()}' ('${method}' is refused by the HTTP parser)`,
    ]);
  });

  test('CONNECT is never routed', () => {
    expect(problems(config(['CONNECT'], ['CONNECT']))).toContain('routes[0].match.methods[0]: CONNECT is never routed: the gateway answers it with 400 itself');
  });
});
