// ES module entry of @alyx/functions: the implementation is index.cjs, shared with require().
import sdk from "./index.cjs";

export const defineFunction = sdk.defineFunction;
export const AlyxError = sdk.AlyxError;
export default sdk;
