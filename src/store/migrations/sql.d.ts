// Type of `import sql from "./NNNN_name.sql" with { type: "text" }`: Bun embeds the file's text
// (also inside a `bun build --compile` binary).
declare module "*.sql" {
  const text: string;
  export default text;
}
