// pf's version string, shown by `pf version` and `pf --help`.
export const PF_VERSION = "0.1.0";
