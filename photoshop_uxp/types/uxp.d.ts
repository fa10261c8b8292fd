// The `uxp` module is used untyped (see src/photoshop.js); this only lets `require("uxp")` resolve.
declare module "uxp";
