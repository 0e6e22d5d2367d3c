// ES module entry of @alyx/functions: the implementation is index.cjs, shared with require().
// Loaded through require, not `import ... from "./index.cjs"`: an import of CommonJS has
// its source scanned for named exports first, a cost every new worker paid at start.
import { createRequire } from "node:module";

const sdk = createRequire(import.meta.url)("./index.cjs");

export const defineFunction = sdk.defineFunction;
export const AlyxError = sdk.AlyxError;
export default sdk;
