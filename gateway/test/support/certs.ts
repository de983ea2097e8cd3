/**
 * Certificates made at test run time with the real `openssl`: a CA of its own per test suite, and
 * server and client certificates it signs. EC P-256 keys (fast to make). Files are PEM, in `dir`.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface IssuedCert {
  /** Path of the certificate (PEM). */
  cert: string;
  /** Path of its private key (PEM, unencrypted). */
  key: string;
}

export interface TestCa {
  /** Path of the CA certificate (PEM): what clients and servers are told to trust. */
  cert: string;
  /** Issues a certificate signed by this CA. */
  issue(name: string, options?: IssueOptions): IssuedCert;
}

export interface IssueOptions {
  /** subjectAltName entries; default DNS:localhost and IP:127.0.0.1 (a server on loopback). */
  altNames?: string[];
  /** serverAuth (default) or clientAuth. */
  usage?: 'server' | 'client';
  /** Validity; 0 makes a certificate that expires the second it is made. Default 2. */
  days?: number;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A temporary directory for a suite's files; remove it with removeCertDir. */
export function makeCertDir(): string {
  return mkdtempSync(path.join(tmpdir(), 'sluice-certs-'));
}

export function removeCertDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A new certificate authority named `name`, its files in `dir`. */
export function createCa(dir: string, name = 'sluice test CA'): TestCa {
  const base = name.replace(/[^A-Za-z0-9]+/g, '-');
  const caCert = path.join(dir, `${base}.crt`);
  const caKey = path.join(dir, `${base}.key`);
  openssl(
    [
      'req', '-x509', ...EC_KEY, '-keyout', caKey, '-out', caCert, '-days', '2', '-subj', `/CN=${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  let issued = 0;
  return {
    cert: caCert,
    issue(certName, options = {}) {
      const file = path.join(dir, `${base}-${certName.replace(/[^A-Za-z0-9]+/g, '-')}-${++issued}`);
      const usage = options.usage ?? 'server';
      const altNames = options.altNames ?? (usage === 'server' ? ['DNS:localhost', 'IP:127.0.0.1'] : []);
      const extensions = [
        'basicConstraints=CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        `extendedKeyUsage=${usage === 'server' ? 'serverAuth' : 'clientAuth'}`,
        ...(altNames.length > 0 ? [`subjectAltName=${altNames.join(',')}`] : []),
      ];
      writeFileSync(`${file}.ext`, extensions.join('\n') + '\n');
      openssl(['req', '-new', ...EC_KEY, '-keyout', `${file}.key`, '-out', `${file}.csr`, '-subj', `/O=sluice tests/CN=${certName}`], dir);
      openssl(
        [
          'x509', '-req', '-in', `${file}.csr`, '-CA', caCert, '-CAkey', caKey, '-set_serial', `0x${randomSerial()}`,
          '-days', String(options.days ?? 2), '-extfile', `${file}.ext`, '-out', `${file}.crt`,
        ],
        dir,
      );
      return { cert: `${file}.crt`, key: `${file}.key` };
    },
  };
}

/** A self-signed server certificate for localhost and 127.0.0.1 (no CA vouches for it). */
export function selfSigned(dir: string, name: string): IssuedCert {
  const file = path.join(dir, `self-signed-${name.replace(/[^A-Za-z0-9]+/g, '-')}`);
  openssl(
    ['req', '-x509', ...EC_KEY, '-keyout', `${file}.key`, '-out', `${file}.crt`, '-days', '2', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
    dir,
  );
  return { cert: `${file}.crt`, key: `${file}.key` };
}

function randomSerial(): string {
  return Array.from({ length: 16 }, () => Math.floor(Math.random() * 16).toString(16)).join('').replace(/^0/, '1');
}

/** The serial number of the certificate in a PEM file (hex, as X509Certificate spells it). */
export function serialOf(certFile: string): string {
  return new X509Certificate(readFileSync(certFile)).serialNumber;
}
