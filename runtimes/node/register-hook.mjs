// Loaded with `node --import` outside the sandbox: installs resolve-hook.mjs.
import { register } from "node:module";

register("./resolve-hook.mjs", import.meta.url);
