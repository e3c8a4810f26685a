// Runs an ONNX model in ONNX Runtime (onnxruntime-node, CPU) on inputs read from a safetensors file
// and writes every output to another safetensors file, so tests can compare aviary with ORT.
//   node tools/node/ort_run.js model.onnx inputs.safetensors outputs.safetensors [--threads 2] [--bench N]
// Each graph input is taken from the entry of the same name in inputs.safetensors. With --bench N,
// runs N timed iterations after one warm-up and prints one JSON line {"median_ms": .., "min_ms": ..}.
// Exits 1 with ONNX Runtime's message when the model cannot be loaded or run, 2 on bad usage.
'use strict';
const fs = require('fs');
const path = require('path');

// safetensors dtype <-> ONNX Runtime tensor type and typed array
const DTYPES = {
  F32: ['float32', Float32Array], F64: ['float64', Float64Array], I64: ['int64', BigInt64Array],
  I32: ['int32', Int32Array], I16: ['int16', Int16Array], I8: ['int8', Int8Array], U8: ['uint8', Uint8Array],
  U16: ['uint16', Uint16Array], U32: ['uint32', Uint32Array], U64: ['uint64', BigUint64Array],
  BOOL: ['bool', Uint8Array], F16: ['float16', Uint16Array],
};
const ORT_TO_ST = {};
for (const [code, [ort]] of Object.entries(DTYPES)) ORT_TO_ST[ort] = code;

function fail(msg, code = 1) {
  process.stderr.write(`ort_run: ${msg}\n`);
  process.exit(code);
}

function readSafetensors(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 8) throw new Error(`${file}: too short for a safetensors file`);
  const n = Number(buf.readBigUInt64LE(0));
  if (n > buf.length - 8) throw new Error(`${file}: header length ${n} exceeds the file`);
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const base = 8 + n;
  const out = {};
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const dt = DTYPES[e.dtype];
    if (!dt) throw new Error(`${file}: tensor '${name}' has unsupported dtype ${e.dtype}`);
    const [begin, end] = e.data_offsets;
    if (begin > end || base + end > buf.length) throw new Error(`${file}: tensor '${name}' lies outside the file`);
    const Arr = dt[1];
    // copy into a fresh, aligned buffer
    const bytes = new Uint8Array(end - begin);
    bytes.set(buf.subarray(base + begin, base + end));
    if (bytes.length % Arr.BYTES_PER_ELEMENT) throw new Error(`${file}: tensor '${name}' has a partial element`);
    out[name] = { type: dt[0], dims: e.shape, data: new Arr(bytes.buffer, 0, bytes.length / Arr.BYTES_PER_ELEMENT) };
  }
  return out;
}

function writeSafetensors(file, tensors) {
  const header = {};
  const chunks = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const code = ORT_TO_ST[t.type];
    if (!code) throw new Error(`output '${name}' has type ${t.type}, which safetensors cannot hold`);
    const data = t.data;
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    header[name] = { dtype: code, shape: Array.from(t.dims, Number), data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const tmp = `${file}.tmp.${process.pid}`;
  fs.writeFileSync(tmp, Buffer.concat([len, Buffer.from(json, 'utf8'), ...chunks]));
  fs.renameSync(tmp, file);
}

async function main() {
  const args = process.argv.slice(2);
  const pos = [];
  let threads = 2, bench = 0;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--threads') threads = parseInt(args[++i], 10);
    else if (args[i] === '--bench') bench = parseInt(args[++i], 10);
    else pos.push(args[i]);
  }
  if (pos.length !== 3 || !(threads >= 1) || !(bench >= 0))
    fail('usage: node ort_run.js model.onnx inputs.safetensors outputs.safetensors [--threads N] [--bench N]', 2);
  const [modelPath, inPath, outPath] = pos;

  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    fail(`cannot load onnxruntime-node (cd ${path.dirname(__filename)} && npm ci --ignore-scripts): ${e.message}`, 2);
  }
  let inputs;
  try {
    inputs = readSafetensors(inPath);
  } catch (e) {
    fail(e.message);
  }
  let session;
  try {
    session = await ort.InferenceSession.create(modelPath, {
      executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
    });
  } catch (e) {
    fail(`cannot load ${modelPath}: ${e.message}`);
  }
  const feeds = {};
  for (const name of session.inputNames) {
    const t = inputs[name];
    if (!t) fail(`${inPath} has no tensor '${name}' for the model's input (inputs: ${session.inputNames.join(', ')})`);
    feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
  }
  let results;
  try {
    results = await session.run(feeds);
    if (bench > 0) {
      const times = [];
      for (let i = 0; i < bench; i++) {
        const t0 = process.hrtime.bigint();
        await session.run(feeds);
        times.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
      times.sort((a, b) => a - b);
      const mid = times.length >> 1;
      const median = times.length % 2 ? times[mid] : (times[mid - 1] + times[mid]) / 2;
      process.stdout.write(JSON.stringify({ median_ms: median, min_ms: times[0] }) + '\n');
    }
  } catch (e) {
    fail(`running ${modelPath}: ${e.message}`);
  }
  try {
    writeSafetensors(outPath, results);
  } catch (e) {
    fail(e.message);
  }
  await session.release();
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
