// REST routes of the cluster NBD CA (pf extensions, docs/design.md "NBD over TLS"), registered on
// the token-checked /api app by rest_routes.ts before its generic routes:
// - GET  /api/pf/nbdCa: the CA certificate NBD clients trust (public: class certificateList, every role);
// - POST /api/pf/nbdCa/issueClientCertificate {name, publicKeyPem}: a client certificate for a
//   key the client made (class certificates: Security, SuperUser; audited like every change).
// - GET  /api/pf/nbdCa/clientCertificates: every client certificate issued, with its state (class
//   certificateList: every role, Security included, since it revokes them);
// - POST /api/pf/nbdCa/revokeClientCertificate {serialNumber | name, reason?}: revoke (class
//   certificates; audited), SDCs refuse the certificate and close its sessions (core/nbd_client_certs.ts).
// The CA key never appears in an answer (core/nbd_ca.ts).

import type { Hono } from "hono";
import { IssueNbdClientCert, RevokeNbdClientCert } from "../../proto/nbd_certs.ts";
import type { AccessVars } from "./access_edge.ts";
import type { MdmContext } from "../core/context.ts";
import { readBody } from "../core/http_edge.ts";
import { issueNbdClientCert, nbdCaAnswer } from "../core/nbd_ca.ts";
import { listNbdClientCerts, revokeNbdClientCert } from "../core/nbd_client_certs.ts";

export function registerNbdCaRoutes(api: Hono<AccessVars>, ctx: MdmContext): void {
  api.get("/pf/nbdCa", (c) => c.json(nbdCaAnswer(ctx)));
  api.post("/pf/nbdCa/issueClientCertificate", async (c) => {
    const body = await readBody(c, IssueNbdClientCert);
    return c.json(issueNbdClientCert(ctx, body.name, body.publicKeyPem, `user ${c.get("principal").userName}`));
  });
  api.get("/pf/nbdCa/clientCertificates", (c) => c.json(listNbdClientCerts(ctx)));
  api.post("/pf/nbdCa/revokeClientCertificate", async (c) => {
    const body = await readBody(c, RevokeNbdClientCert);
    return c.json(revokeNbdClientCert(ctx, body, `user ${c.get("principal").userName}`));
  });
}
