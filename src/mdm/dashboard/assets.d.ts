// Types of `import text from "./assets/x.css" with { type: "text" }` (and .svg): Bun embeds
// the file's text, also inside a `bun build --compile` binary. (bun-types types *.html as an
// HTMLBundle for Bun.serve's HTML routes; with type "text" it is a string too, checked where
// it is imported.)
declare module "*.css" {
  const text: string;
  export default text;
}
declare module "*.svg" {
  const text: string;
  export default text;
}
