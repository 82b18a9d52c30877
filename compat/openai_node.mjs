// Drive a running openai-dit server with the official `openai` npm package: only `baseURL` changes.
//
//   node compat/openai_node.mjs --url http://127.0.0.1:8000 [--api-key K] [--steps 2] [--modules DIR]
//
// The package is loaded from DIR/node_modules (default: $OPENAI_DIT_TINY_CACHE/node, else ~/.cache/openai-dit/node),
// installed there with `npm install openai`; it is never part of the repository. What the package sends:
// images.generate is JSON with unknown keys passed through (num_inference_steps, seed); images.edit is multipart
// with one file under `image` and several as repeated `image[]`; videos.create is always multipart, extra keys as
// form fields; videos.retrieve polls GET /videos/{id}; videos.downloadContent sends Accept: application/binary.
// The checks follow the served model's tasks (GET /v1/models). One line per check; exits non-zero on the first
// failure.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { deflateSync } from 'node:zlib';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:8000' },
    'api-key': { type: 'string', default: 'unused' },
    steps: { type: 'string', default: '2' },
    modules: { type: 'string' },
    only: { type: 'string', default: '' }, // comma-separated words: run only the checks whose name has one
  },
});
const modules = args.modules ?? join(process.env.OPENAI_DIT_TINY_CACHE ?? join(homedir(), '.cache', 'openai-dit'), 'node');
const require = createRequire(join(modules, 'package.json'));
let sdk;
try {
  sdk = require('openai');
} catch (error) {
  console.log(`FAIL load: the openai package is not installed in ${modules} (npm install --prefix ${modules} openai): ${error.message}`);
  process.exit(1);
}
const { OpenAI, toFile } = sdk;
const version = JSON.parse(readFileSync(join(modules, 'node_modules', 'openai', 'package.json'), 'utf8')).version;
const steps = Number(args.steps);
const baseURL = args.url.replace(/\/+$/, '') + '/v1';
const client = new OpenAI({ baseURL, apiKey: args['api-key'], maxRetries: 0, timeout: 600_000 });

// A solid-colour RGB PNG, made here (no image library in node).
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buffer) {
  let c = 0xffffffff;
  for (const byte of buffer) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}
function png(width, height, [r, g, b]) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array.from({ length: width }, () => [r, g, b]).flat())]);
  const pixels = Buffer.concat(Array.from({ length: height }, () => row));
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', header),
    chunk('IDAT', deflateSync(pixels)), chunk('IEND', Buffer.alloc(0))]);
}
function pngSize(b64) {
  const bytes = Buffer.from(b64, 'base64');
  assert(bytes.subarray(1, 4).toString('ascii') === 'PNG', 'not a PNG');
  return `${bytes.readUInt32BE(16)}x${bytes.readUInt32BE(20)}`;
}
function assert(condition, message) {
  if (!condition) throw new Error(message);
}
async function expectError(status, param, call) {
  try {
    await call();
  } catch (error) {
    if (!(error instanceof OpenAI.APIError) || error.status === undefined) throw error;
    assert(error.status === status, `expected HTTP ${status}, got ${error.status}: ${error.message}`);
    assert(param === null || error.param === param, `expected param ${param}, got ${error.param}: ${error.message}`);
    return error;
  }
  throw new Error(`expected HTTP ${status}, the call succeeded`);
}

const cards = await fetch(`${baseURL}/models`, { headers: { Authorization: `Bearer ${args['api-key']}` } });
assert(cards.ok, `GET /v1/models: ${cards.status}`);
const card = (await cards.json()).data[0];
const model = card.id;
const caps = card.capabilities ?? {};
const tasks = caps.tasks ?? [];
const multiple = caps.size_multiple ?? 16;
const side = multiple * Math.max(1, Math.floor(64 / multiple));
const size = `${side}x${side}`;

const checks = [];

if (tasks.includes('text-to-image')) {
  checks.push(['images.generate', async () => {
    const result = await client.images.generate({
      model, prompt: 'a lighthouse at dusk', n: 2, size, response_format: 'b64_json',
      num_inference_steps: steps, seed: 7,
    });
    assert(result.data.length === 2, `n=2 gave ${result.data.length}`);
    assert(pngSize(result.data[0].b64_json) === size, `size ${pngSize(result.data[0].b64_json)} != ${size}`);
    const one = (seed) => client.images.generate({
      model, prompt: 'a lighthouse at dusk', size, response_format: 'b64_json', num_inference_steps: steps, seed,
    }).then((r) => r.data[0].b64_json);
    const [first, again, other] = [await one(7), await one(7), await one(8)];
    assert(first === again && first !== other, 'seed 7 twice / seed 8 did not repeat / differ: seed not applied');
    return `n=2 ${size} b64_json, seed/num_inference_steps passed through`;
  }]);
  checks.push(['images.generate aliases', async () => {
    const gpt = await client.images.generate({ model: 'gpt-image-1', prompt: 'a cat', size, num_inference_steps: steps });
    assert(gpt.data[0].b64_json, `gpt-image-1 without response_format: b64_json expected: ${JSON.stringify(gpt.data[0])}`);
    const dalle = await client.images.generate({ model: 'dall-e-2', prompt: 'a cat', size, num_inference_steps: steps });
    const url = dalle.data[0].url;
    assert(url && /^https?:\/\//.test(url), `dall-e-2 without response_format: an absolute url expected: ${JSON.stringify(dalle.data[0])}`);
    const got = await fetch(url);
    assert(got.ok && got.headers.get('content-type') === 'image/png', `GET ${url}: ${got.status} ${got.headers.get('content-type')}`);
    return 'gpt-image-1 -> b64_json, dall-e-2 -> url (downloaded)';
  }]);
  checks.push(['images.generate errors', async () => {
    await expectError(400, 'size', () => client.images.generate({ prompt: 'x', size: `${side + 1}x${side}` }));
    await expectError(400, 'num_inference_stepz', () => client.images.generate({ prompt: 'x', size, num_inference_stepz: 2 }));
    return 'bad size and an unknown field: BadRequestError with param';
  }]);
}

if (tasks.includes('image-edit')) {
  const red = png(96, 64, [220, 40, 40]);
  const blue = png(64, 64, [40, 40, 220]);
  checks.push(['images.edit one file', async () => {
    const result = await client.images.edit({
      model, image: await toFile(red, 'red.png', { type: 'image/png' }), prompt: 'make it blue',
      response_format: 'b64_json', num_inference_steps: steps, seed: 3,
    });
    return `image (one file) -> ${pngSize(result.data[0].b64_json)}`;
  }]);
  checks.push(['images.edit url[] instead of files', async () => {
    // SGLang's and vLLM-Omni's URL-only edit: no file, the images as `url` entries (the SDK sends url[] fields).
    const dataURL = (buffer) => `data:image/png;base64,${buffer.toString('base64')}`;
    const urls = (caps.max_input_images ?? 1) >= 2 ? [dataURL(red), dataURL(blue)] : [dataURL(red)];
    const result = await client.images.edit({
      model, image: [], url: urls, prompt: 'combine them', size, num_inference_steps: steps,
    });
    assert(pngSize(result.data[0].b64_json) === size, `size ${pngSize(result.data[0].b64_json)} != ${size}`);
    return `url[] x${urls.length} (data URLs), no file -> ${size}`;
  }]);
  if ((caps.max_input_images ?? 1) >= 2) {
    checks.push(['images.edit two files', async () => {
      const result = await client.images.edit({
        model, image: [await toFile(red, 'red.png', { type: 'image/png' }), await toFile(blue, 'blue.png', { type: 'image/png' })],
        prompt: 'combine them', n: 1, size, num_inference_steps: steps, seed: 3,
      });
      assert(pngSize(result.data[0].b64_json) === size, `size ${pngSize(result.data[0].b64_json)} != ${size}`);
      return `image[] x2 -> ${size} (b64_json by default)`;
    }]);
  }
} else if (tasks.includes('text-to-image')) {
  checks.push(['images.edit refused', async () => {
    await expectError(400, 'image', async () => client.images.edit({
      image: await toFile(png(64, 64, [1, 2, 3]), 'x.png', { type: 'image/png' }), prompt: 'x',
    }));
    return 'a model that cannot edit: 400 param image';
  }]);
}

if (tasks.includes('text-to-video') || tasks.includes('image-to-video')) {
  const reference = tasks.includes('text-to-video') ? {}
    : { input_reference: await toFile(png(side, side, [30, 120, 220]), 'ref.png', { type: 'image/png' }) };
  async function poll(video) {
    const deadline = Date.now() + 300_000;
    const seen = [video.status];
    while (video.status === 'queued' || video.status === 'in_progress') {
      assert(Date.now() < deadline, `video ${video.id} still ${video.status}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
      video = await client.videos.retrieve(video.id);
      if (video.status !== seen.at(-1)) seen.push(video.status);
    }
    assert(video.status === 'completed', `video ended ${video.status}: ${JSON.stringify(video.error)}`);
    return [video, seen];
  }
  checks.push(['videos.create + retrieve + downloadContent', async () => {
    const frames = caps.default_num_frames ?? 9;
    const created = await client.videos.create({
      model, prompt: 'waves on a beach', size, num_frames: frames, fps: 8, num_inference_steps: steps, seed: 4,
      ...reference,
    });
    assert(created.id && created.object === 'video', `not a Video: ${JSON.stringify(created)}`);
    const [video, seen] = await poll(created);
    assert(video.num_frames === frames && video.fps === 8,
      `num_frames ${frames} and fps 8 asked, the job says ${video.num_frames} and ${video.fps}`);
    const content = await client.videos.downloadContent(video.id);
    const mp4 = Buffer.from(await content.arrayBuffer());
    assert(mp4.subarray(4, 8).toString('ascii') === 'ftyp', `not an MP4: ${mp4.subarray(0, 16).toString('hex')}`);
    return `${seen.join(' -> ')}; MP4 ${mp4.length} bytes, ${video.num_frames} frames at ${video.fps} fps`;
  }]);
  checks.push(['videos.create sora-2 seconds', async () => {
    const created = await client.videos.create({
      model: 'sora-2', prompt: 'a dog', seconds: '1', size, num_inference_steps: steps, ...reference,
    });
    const [video] = await poll(created);
    assert(video.seconds === '1', `seconds must come back as the string '1': ${JSON.stringify(video.seconds)}`);
    const thumbnail = Buffer.from(await (await client.videos.downloadContent(video.id, { variant: 'thumbnail' })).arrayBuffer());
    assert(thumbnail.subarray(8, 12).toString('ascii') === 'WEBP', 'the thumbnail is not WebP');
    return "model sora-2, seconds '1', thumbnail WebP";
  }]);
  checks.push(['videos errors', async () => {
    await expectError(404, null, () => client.videos.retrieve('video_' + '0'.repeat(32)));
    await expectError(400, 'num_framez', () => client.videos.create({ prompt: 'x', size, num_framez: 9, ...reference }));
    return 'unknown id: NotFoundError; unknown field: BadRequestError with param';
  }]);
}

if ((await fetch(`${baseURL}/models`)).status === 401) { // the server requires a key
  checks.push(['wrong API key', async () => {
    const wrong = new OpenAI({ baseURL, apiKey: 'wrong-key', maxRetries: 0 });
    const error = await expectError(401, null, () => wrong.models.list());
    assert(error instanceof OpenAI.AuthenticationError, `not an AuthenticationError: ${error.constructor.name}`);
    return '401 -> AuthenticationError';
  }]);
}

console.log(`openai npm ${version} (node ${process.version}) against ${model}: tasks ${JSON.stringify(tasks)}`);
const words = args.only.split(',').filter(Boolean);
const selected = checks.filter(([name]) => words.length === 0 || words.some((word) => name.includes(word)));
for (const [name, check] of selected) {
  try {
    const detail = await check();
    console.log(`ok   ${name}: ${detail}`);
  } catch (error) {
    console.log(`FAIL ${name}: ${error.constructor.name}: ${error.message}`);
    process.exit(1);
  }
}
console.log(`openai node: all ${selected.length} checks passed`);
