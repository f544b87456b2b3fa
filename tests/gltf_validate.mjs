// Validate one glTF/GLB file with the Khronos glTF validator and print its JSON report.
//
//   node tests/gltf_validate.mjs MODEL.glb [FOLDER]
//
// FOLDER holds node_modules/gltf-validator (the npm package); by default $SV4D_GLTF_VALIDATOR,
// else ~/.cache/sv4d/node. Exit status 0 with the report on stdout (whatever it says), 2 when the
// validator cannot be loaded or refuses the input. tests/conftest.py's gltf_validate runs this.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { basename, join, resolve } from "node:path";

const [file, folderArg] = process.argv.slice(2);
if (!file) {
  console.error("usage: node gltf_validate.mjs MODEL.glb [FOLDER with node_modules/gltf-validator]");
  process.exit(2);
}
const folder = resolve(folderArg || process.env.SV4D_GLTF_VALIDATOR || join(homedir(), ".cache", "sv4d", "node"));
let validator;
try {
  validator = createRequire(join(folder, "package.json"))("gltf-validator");
} catch (e) {
  console.error(`cannot load gltf-validator from ${folder}/node_modules: ${e.message}`);
  process.exit(2);
}
try {
  const report = await validator.validateBytes(new Uint8Array(readFileSync(file)), {
    uri: basename(file),
    maxIssues: 100,
    writeTimestamp: false,
  });
  process.stdout.write(JSON.stringify(report));
} catch (e) {
  console.error(`the validator refused ${file}: ${e}`);
  process.exit(2);
}
