// Resolves "@alyx/functions" to the SDK shipped beside this executor, for runs outside
// the sandbox (where the SDK is mounted at /alyx/node_modules and needs no hook).
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const sdk = pathToFileURL(
  path.join(path.dirname(fileURLToPath(import.meta.url)), "packages", "@alyx", "functions", "index.mjs"),
).href;

export async function resolve(specifier, context, next) {
  if (specifier === "@alyx/functions") return { url: sdk, shortCircuit: true };
  return next(specifier, context);
}
