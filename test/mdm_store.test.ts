// MDM persistence pieces: the versioned migration runner (embedded SQL, one transaction per
// version, refuses a newer database) and the self-signed certificate builder.

import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { certHostsFor } from "../src/mdm/secrets.ts";
import { PfError } from "../src/proto/errors.ts";
import { certCoversHost, describeCert, generateSelfSignedCert } from "../src/proto/tls_cert.ts";
import { openMdmDb } from "../src/store/mdm_db.ts";
import { MDM_MIGRATIONS, migrateMdmDb, schemaVersionOf, type Migration } from "../src/store/mdm_migrate.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function dbPath(): string {
  const d = mkdtempSync(join(tmpdir(), "pf-mdm-store-"));
  dirs.push(d);
  return join(d, "mdm.db");
}

describe("migrations", () => {
  test("the embedded schema applies once, in WAL mode, and records its version", () => {
    const path = dbPath();
    const db = openMdmDb(path);
    expect(schemaVersionOf(db.sqlite)).toBe(MDM_MIGRATIONS.at(-1)!.version);
    expect((db.sqlite.query("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode).toBe("wal");
    const tables = (db.sqlite.query("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((t) => t.name);
    for (const t of ["system", "volume", "extent", "token", "schema_version"]) expect(tables).toContain(t);
    db.close();
    const again = new Database(path);
    expect(migrateMdmDb(again)).toEqual([]);
    again.close();
  });

  test("a later migration applies on top; a failing one leaves the database at the last whole version", () => {
    const sqlite = new Database(dbPath());
    const last = MDM_MIGRATIONS.at(-1)!.version;
    const v1: Migration = { version: last + 1, name: "9001_add", sql: "CREATE TABLE extra (x INTEGER);" };
    expect(migrateMdmDb(sqlite, [...MDM_MIGRATIONS, v1])).toEqual([...MDM_MIGRATIONS.map((m) => m.version), last + 1]);
    const broken: Migration = { version: last + 2, name: "9002_broken", sql: "CREATE TABLE half (x INTEGER); INSERT INTO nowhere VALUES (1);" };
    expect(() => migrateMdmDb(sqlite, [...MDM_MIGRATIONS, v1, broken])).toThrow();
    expect(schemaVersionOf(sqlite)).toBe(last + 1);
    expect(sqlite.query("SELECT name FROM sqlite_master WHERE name = 'half'").get()).toBeNull();
    sqlite.close();
  });

  test("a database from a newer binary is refused and left untouched", () => {
    const sqlite = new Database(dbPath());
    migrateMdmDb(sqlite, [...MDM_MIGRATIONS, { version: 900, name: "0900_future", sql: "CREATE TABLE future (x INTEGER);" }]);
    const err = (() => {
      try {
        migrateMdmDb(sqlite);
        return null;
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(PfError);
    expect((err as PfError).message).toContain("newer than this binary");
    expect(schemaVersionOf(sqlite)).toBe(900);
    sqlite.close();
  });
});

describe("self-signed certificate", () => {
  test("names every given address and DNS name, EC P-256, self-issued, valid now", () => {
    const c = generateSelfSignedCert({ commonName: "pf-mdm test", hosts: ["10.1.2.3", "127.0.0.1", "::1", "fe80::1:2", "localhost", "mdm.example"] });
    const x = new X509Certificate(c.certPem);
    expect(x.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(x.issuer).toBe(x.subject);
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.ca).toBe(true);
    expect(new Date(x.validFrom).getTime()).toBeLessThan(Date.now());
    expect(new Date(x.validTo).getTime()).toBeGreaterThan(Date.now() + 365 * 86_400_000);
    for (const h of ["10.1.2.3", "127.0.0.1", "::1", "fe80::1:2", "localhost", "mdm.example"]) expect(certCoversHost(c.certPem, h)).toBe(true);
    for (const h of ["10.1.2.4", "other.example", "::2"]) expect(certCoversHost(c.certPem, h)).toBe(false);
    expect(describeCert(c.certPem, c.keyPem).subjectAltName).toContain("DNS:mdm.example");
    const other = generateSelfSignedCert({ commonName: "x", hosts: ["127.0.0.1"] });
    expect(() => describeCert(c.certPem, other.keyPem)).toThrow("does not match");
  });

  test("the MDM's certificate names its listen IP, loopback, localhost and the host name", () => {
    const hosts = certHostsFor("192.0.2.7");
    for (const h of ["192.0.2.7", "127.0.0.1", "::1", "localhost", hostname()]) expect(hosts).toContain(h);
    const wild = certHostsFor("0.0.0.0");
    expect(wild).toContain("127.0.0.1");
    expect(wild).not.toContain("0.0.0.0");
  });
});
