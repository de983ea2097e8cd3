import { answersWithoutBody, bodilessHeaders } from '../../src/proxy/bodiless';

describe('bodiless answers', () => {
  it.each([
    ['GET', 204, true],
    ['GET', 304, true],
    ['GET', 100, true],
    ['GET', 103, true],
    ['HEAD', 200, true],
    ['HEAD', 404, true],
    ['GET', 200, false],
    ['POST', 205, false],
    ['GET', 404, false],
  ])('%s answered %i has no body: %s', (method, status, expected) => {
    expect(answersWithoutBody(method as string, status as number)).toBe(expected);
  });

  it('drops Content-Length from 1xx, 204 and 304, keeps it on a HEAD answer', () => {
    const headers = { 'content-length': '5', etag: '"x"' };
    expect(bodilessHeaders('GET', 204, headers)).toEqual({ etag: '"x"' });
    expect(bodilessHeaders('GET', 304, headers)).toEqual({ etag: '"x"' });
    expect(bodilessHeaders('HEAD', 304, headers)).toEqual({ etag: '"x"' });
    expect(bodilessHeaders('HEAD', 200, headers)).toEqual(headers);
  });
});
