// One row of `pf doctor`: what was checked, how it went and, when it did not go well, the fix.
// "info" is for what cannot be known or does not apply (NTP state without timedatectl, etcd in a
// single-MDM cluster, members of a cluster not deployed yet): it never fails the doctor.

export const CheckStatuses = ["ok", "info", "warning", "failed"] as const;
export type CheckStatus = (typeof CheckStatuses)[number];

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  fix?: string;
}

export const ok = (name: string, detail: string): Check => ({ name, status: "ok", detail });
export const info = (name: string, detail: string, fix?: string): Check => ({ name, status: "info", detail, ...(fix ? { fix } : {}) });
export const warning = (name: string, detail: string, fix: string): Check => ({ name, status: "warning", detail, fix });
export const failed = (name: string, detail: string, fix: string): Check => ({ name, status: "failed", detail, fix });

/** A PfError-style message "problem; fix" split into a failed row. */
export function failedFrom(name: string, message: string): Check {
  const at = message.indexOf("; ");
  return at < 0 ? failed(name, message, "") : failed(name, message.slice(0, at), message.slice(at + 2));
}
