// Build-time bundling of the dashboard's browser code. Imported `with { type: "macro" }`, so
// Bun runs bundleBrowserEntry while it transpiles the importer (in `bun build --compile`, and in
// `bun run`/`bun test`) and inlines the returned text: the compiled binary carries the bundle
// and reads nothing from disk at run time. Bun.build cannot run inside a macro (the bundler
// waits on it), so the bun CLI that is transpiling runs `bun build` as a child process.
// A front-end that does not compile fails the build loudly, never ships half a bundle.

/** The bundled, minified ES module of a browser entry file (path relative to this file). */
export function bundleBrowserEntry(relativePath: string): string {
  const entry = new URL(relativePath, import.meta.url).pathname;
  const r = Bun.spawnSync([process.execPath, "build", entry, "--target=browser", "--format=esm", "--minify"], {
    env: { ...process.env, BUN_BE_BUN: "1" },
    stdout: "pipe",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`dashboard bundle of ${relativePath} failed (exit ${r.exitCode}): ${r.stderr.toString()}`);
  const js = r.stdout.toString();
  if (js.length === 0) throw new Error(`dashboard bundle of ${relativePath} is empty`);
  return js;
}
