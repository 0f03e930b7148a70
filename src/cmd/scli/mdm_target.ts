// Which MDM scli talks to and how it checks the MDM's certificate: --mdm_ip HOST[:PORT] (https,
// default port 6611), else PF_MDM (a URL), else https://127.0.0.1:6611 (scli runs on the MDM
// host, as PowerFlex's does). The certificate comes from --mdm_ca FILE or PF_MDM_CA.
// Invariant: TLS verification is never skipped; an https MDM without a certificate is an error.
// The URL is normalised to its origin, which is also the session key. An MDM cluster is a
// comma-separated list (--mdm_ip ip1,ip2,ip3 as PowerFlex's scli, or PF_MDM=url1,url2): every
// call goes to the active MDM of the list (src/proto/mdm_http.ts follows a takeover), one
// certificate (the cluster's CA) verifies them all, and the whole list is the session key.

import { readFileSync } from "node:fs";
import { DEFAULT_MDM_PORT } from "../../proto/cluster_config.ts";
import { isPfError } from "../../proto/errors.ts";
import { checkMdmUrl } from "../../proto/mdm_http.ts";
import { parseHostPort } from "../../proto/sizes.ts";
import type { ScliArgs } from "./argv_parse.ts";
import { ScliError, usageError } from "./scli_errors.ts";

export interface MdmTarget {
  /** origin of the MDM, e.g. https://127.0.0.1:6611 */
  url: string;
  /** PEM of the MDM certificate; null only for plain-http loopback URLs */
  caPem: string | null;
}

type Env = Readonly<Record<string, string | undefined>>;

export function mdmTargetOf(args: ScliArgs, env: Env): MdmTarget {
  const url = mdmUrlOf(args, env);
  if (!url.startsWith("https:")) return { url, caPem: null };
  const caFlag = args.str("mdm_ca");
  const caFile = caFlag ?? env.PF_MDM_CA;
  if (!caFile) {
    throw new ScliError("BAD_REQUEST", `no certificate for MDM ${url}: give --mdm_ca FILE or set PF_MDM_CA (scli always verifies the MDM)`);
  }
  return { url, caPem: readCa(caFile, caFlag !== undefined ? "--mdm_ca" : "PF_MDM_CA") };
}

function mdmUrlOf(args: ScliArgs, env: Env): string {
  const flag = args.str("mdm_ip");
  if (flag !== undefined) return listOf(flag, (one) => mdmIpUrl(one));
  const fromEnv = env.PF_MDM;
  if (fromEnv) return listOf(fromEnv, (one) => originOf(one, "PF_MDM"));
  return `https://127.0.0.1:${DEFAULT_MDM_PORT}`;
}

function listOf(text: string, one: (s: string) => string): string {
  const parts = text.split(",").map((p) => p.trim()).filter((p) => p.length > 0);
  if (parts.length === 0) throw usageError(`no MDM address in ${JSON.stringify(text)}`);
  return parts.map(one).join(",");
}

function mdmIpUrl(flag: string): string {
  if (flag.includes("://")) return originOf(flag, "--mdm_ip");
  const hp = parseHostPort(flag, DEFAULT_MDM_PORT);
  if (!hp || hp.port === 0) throw usageError(`--mdm_ip must be HOST[:PORT], got ${JSON.stringify(flag)}`);
  const host = hp.host.includes(":") ? `[${hp.host}]` : hp.host;
  return originOf(`https://${host}:${hp.port}`, "--mdm_ip");
}

function originOf(url: string, source: string): string {
  try {
    return checkMdmUrl(url).origin;
  } catch (e) {
    if (isPfError(e)) throw usageError(`${source}: ${e.message}`);
    throw e;
  }
}

function readCa(file: string, source: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, "utf8");
  } catch (e) {
    throw new ScliError("BAD_REQUEST", `cannot read the MDM certificate ${file} (${source}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new ScliError("BAD_REQUEST", `${file} (${source}) holds no PEM certificate`);
  return pem;
}
