// PowerFlex user roles and what each may do, deny by default. Every REST route is given one
// access class (rest/route_access.ts); a role may run a route only if ROLE_GRANTS lists its
// class. Which roles a user manager may create, change or remove is a second table.
// Invariants: the tables are typed Record<Role, …> and Record<AccessClass, …> so a new role or
// class without a row is a compile error; nothing here is granted by omission.

export const Roles = ["Monitor", "Configure", "FrontendConfig", "BackendConfig", "Administrator", "Security", "SuperUser"] as const;
export type Role = (typeof Roles)[number];

export function isRole(s: string): s is Role {
  return (Roles as readonly string[]).includes(s);
}

/**
 * What a route does, for the role check:
 * - read: queries of the storage objects, statistics, alerts, the MDM cluster;
 * - frontend: volumes, snapshots, SDCs, mappings, SDC approval;
 * - backend: protection domains, pools, fault sets, SDSs, devices;
 * - system: system-wide settings (restricted SDC mode, data-plane key, MDM ownership, name);
 * - users: listing and managing other users (which roles: MANAGED_ROLES);
 * - audit: reading and verifying the audit log;
 * - certificates: issuing and revoking NBD client certificates of the cluster NBD CA (core/nbd_ca.ts);
 * - certificateList: listing those certificates (every role: Monitor and up read them, and
 *   Security, which reads no storage objects, must see what it revokes);
 * - self: the caller's own session and password (logout, query/set own password).
 */
export const AccessClasses = ["read", "frontend", "backend", "system", "users", "audit", "certificates", "certificateList", "self"] as const;
export type AccessClass = (typeof AccessClasses)[number];

/** The PowerFlex 3.x table (security.md §2, proposal (c)); Security reads no storage objects. */
export const ROLE_GRANTS: Record<Role, readonly AccessClass[]> = {
  Monitor: ["read", "certificateList", "self"],
  FrontendConfig: ["read", "certificateList", "frontend", "self"],
  BackendConfig: ["read", "certificateList", "backend", "self"],
  Configure: ["read", "certificateList", "frontend", "backend", "self"],
  Administrator: ["read", "certificateList", "frontend", "backend", "system", "users", "self"],
  Security: ["users", "audit", "certificates", "certificateList", "self"],
  SuperUser: ["read", "certificateList", "frontend", "backend", "system", "users", "audit", "certificates", "self"],
};

/** Roles of the users a role may create, re-role, reset or remove (SuperUser is the one local admin). */
export const MANAGED_ROLES: Record<Role, readonly Role[]> = {
  Monitor: [],
  FrontendConfig: [],
  BackendConfig: [],
  Configure: [],
  Administrator: ["Monitor", "Configure", "FrontendConfig", "BackendConfig"],
  Security: ["Administrator", "Security"],
  SuperUser: ["Monitor", "Configure", "FrontendConfig", "BackendConfig", "Administrator", "Security"],
};

export function roleMay(role: Role, cls: AccessClass): boolean {
  return ROLE_GRANTS[role].includes(cls);
}

export function mayManage(actor: Role, target: Role): boolean {
  return MANAGED_ROLES[actor].includes(target);
}
