// The PEM files a `tls:` section names, read and checked. The schema calls this so `config check`,
// `serve` and a reload refuse the same unreadable or mismatched files; the listeners and upstream
// pools call it again to get the contents (a reload re-reads them: a renewed certificate).
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import type { Config } from './schema';

/** The file settings of any `tls:` section (listener, admin, upstream); each is optional here. */
export interface TlsFiles {
  cert_file?: string;
  key_file?: string;
  ca_file?: string;
}

/** The files' contents. Key material: never logged, never put in an error message. */
export interface TlsMaterial {
  cert?: Buffer;
  key?: Buffer;
  ca?: Buffer;
}

class TlsFilesError extends Error {
  override readonly name = 'TlsFilesError';

  constructor(
    /** The setting whose file failed (cert_file, key_file, ca_file). */
    readonly field: keyof TlsFiles,
    message: string,
  ) {
    super(message);
  }
}

function read(field: keyof TlsFiles, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new TlsFilesError(field, code === 'ENOENT' ? `file not found: ${file}` : `cannot read ${file} (${code ?? 'error'})`);
  }
}

/**
 * Reads the files and has OpenSSL parse them: the certificate chain, the key (and that it belongs to
 * the certificate), the CA bundle. OpenSSL's reason is kept (it names no key bytes); its library
 * prefix is not.
 */
export function loadTlsFiles(files: TlsFiles): TlsMaterial {
  const material: TlsMaterial = {};
  if (files.cert_file !== undefined) material.cert = read('cert_file', files.cert_file);
  if (files.key_file !== undefined) material.key = read('key_file', files.key_file);
  if (files.ca_file !== undefined) material.ca = read('ca_file', files.ca_file);
  // One file at a time, so the problem names the file at fault.
  check('ca_file', () => material.ca && parseCertificates(material.ca), files.ca_file);
  check('cert_file', () => material.cert && createSecureContext({ cert: material.cert }), files.cert_file);
  check('key_file', () => material.key && createSecureContext({ key: material.key }), files.key_file);
  if (material.cert && material.key) {
    check('key_file', () => createSecureContext({ cert: material.cert, key: material.key }), files.key_file, 'does not match cert_file');
  }
  return material;
}

/** OpenSSL skips what is not a certificate in a CA bundle without a word: each one is parsed here. */
function parseCertificates(pem: Buffer): void {
  const blocks = pem.toString('latin1').match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g);
  if (!blocks) throw new Error('no PEM certificate in it');
  for (const block of blocks) new X509Certificate(block);
}

function check(field: keyof TlsFiles, parse: () => unknown, file: string | undefined, what = 'is not valid PEM'): void {
  try {
    parse();
  } catch (err) {
    const reason = String((err as Error).message ?? err).replace(/^error:[0-9A-F]+:[^:]*:[^:]*:/i, '');
    throw new TlsFilesError(field, `${file} ${what} (${reason})`);
  }
}

/** Why the files cannot be used, or undefined: for the schema. */
export function tlsFilesProblem(files: TlsFiles): { field: keyof TlsFiles; message: string } | undefined {
  try {
    loadTlsFiles(files);
    return undefined;
  } catch (err) {
    if (err instanceof TlsFilesError) return { field: err.field, message: err.message };
    throw err;
  }
}

/** Every TLS file `config` names (listener, admin, upstreams): watched for renewals. */
export function tlsFilePaths(config: Config): string[] {
  const sections: Array<TlsFiles | undefined> = [config.listen.tls, config.admin.tls, ...Object.values(config.upstreams).map((u) => u.tls)];
  return sections.flatMap((tls) => [tls?.cert_file, tls?.key_file, tls?.ca_file]).filter((file): file is string => file !== undefined);
}
