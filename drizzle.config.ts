import { defineConfig } from "drizzle-kit";

// drizzle-kit only generates SQL here; wrangler applies it (never `push`/`migrate` against D1).
export default defineConfig({
  dialect: "sqlite",
  schema: "./src/db/schema.ts",
  out: "./migrations",
});
