// The openai-dit playground: plain JavaScript over the server's own public API (/v1/models, /v1/images/*,
// /v1/videos). Images stream in (partial previews, then the final image); videos run as jobs with progress.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "openai-dit-api-key";
let caps = null;
let modelId = null;
let files = [];

function authHeaders(extra = {}) {
  const key = $("api-key").value.trim();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    const error = body.error || {};
    return error.message ? error.message + (error.param ? ` (${error.param})` : "") : `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function isVideoModel() {
  return caps.tasks.some((task) => task.endsWith("-video"));
}

function takesImages() {
  return caps.max_input_images > 0;
}

async function loadModel() {
  const response = await fetch("/v1/models", { headers: authHeaders() });
  if (!response.ok) {
    $("model").textContent = "The model is not available: " + (await errorMessage(response));
    return;
  }
  const model = (await response.json()).data[0];
  modelId = model.id;
  caps = model.capabilities;
  if (!caps) {
    $("model").textContent = `${model.id} is still loading; reload in a moment.`;
    return;
  }
  const [width, height] = caps.default_size;
  $("model").textContent = `${model.id}: ${caps.tasks.join(", ")} (sizes in multiples of ${caps.size_multiple})`;
  $("size").value = `${width}x${height}`;
  $("steps").value = caps.default_num_inference_steps;
  $("guidance").disabled = !caps.parameters.includes("guidance_scale");
  $("negative").disabled = !caps.parameters.includes("negative_prompt");
  $("seconds-field").hidden = !isVideoModel();
  $("count-field").hidden = isVideoModel();
  $("images-field").hidden = !takesImages();
  $("images").multiple = caps.max_input_images > 1;
  const required = !caps.tasks.includes("text-to-image") && !caps.tasks.includes("text-to-video");
  $("images-label").textContent = (caps.max_input_images > 1 ? `Input images (up to ${caps.max_input_images})`
    : "Input image") + (required ? "" : " (optional)");
}

function setFiles(chosen) {
  files = Array.from(chosen).slice(0, Math.max(1, caps.max_input_images));
  $("chosen").replaceChildren(...files.map((file) => Object.assign(document.createElement("li"), {
    textContent: `${file.name} (${Math.round(file.size / 1024)} KiB)`,
  })));
}

function commonFields() {
  const fields = { prompt: $("prompt").value, size: $("size").value.trim() };
  if ($("negative").value && !$("negative").disabled) fields.negative_prompt = $("negative").value;
  if ($("steps").value) fields.num_inference_steps = Number($("steps").value);
  if ($("guidance").value && !$("guidance").disabled) fields.guidance_scale = Number($("guidance").value);
  if ($("seed").value) fields.seed = Number($("seed").value);
  return fields;
}

function figure(child, caption) {
  const item = document.createElement("figure");
  item.append(child, Object.assign(document.createElement("figcaption"), { textContent: caption }));
  return item;
}

// --- images: a streamed generation or edit -------------------------------------------------------------------
async function runImages() {
  const fields = { ...commonFields(), model: modelId, n: Number($("count").value || 1), stream: true };
  if (caps.partial_images) fields.partial_images = 2;
  let response;
  if (files.length) {
    const form = new FormData();
    Object.entries(fields).forEach(([name, value]) => form.append(name, String(value)));
    files.forEach((file) => form.append("image[]", file));
    response = await fetch("/v1/images/edits", { method: "POST", headers: authHeaders(), body: form });
  } else {
    response = await fetch("/v1/images/generations", {
      method: "POST", headers: authHeaders({ "Content-Type": "application/json" }), body: JSON.stringify(fields),
    });
  }
  if (!response.ok) return showError(await errorMessage(response));
  let finals = 0;
  for await (const event of serverSentEvents(response)) {
    if (event.type === "error") return showError(event.error.message);
    const src = `data:image/${event.output_format};base64,${event.b64_json}`;
    if (event.type.endsWith(".partial_image")) {
      const img = Object.assign(document.createElement("img"), { src, alt: "partial preview", className: "partial" });
      $("results").append(figure(img, `preview ${event.partial_image_index + 1}`));
      $("results").dataset.partials = Number($("results").dataset.partials) + 1;
    } else if (event.type.endsWith(".completed")) {
      if (finals === 0) $("results").querySelectorAll("figure").forEach((item) => item.remove());
      finals += 1;
      const img = Object.assign(document.createElement("img"), { src, alt: `generated image ${finals}` });
      img.dataset.final = "true";
      const link = Object.assign(document.createElement("a"), {
        href: src, download: `image-${finals}.${event.output_format}`, textContent: "download",
      });
      const item = figure(img, `${event.size} `);
      item.querySelector("figcaption").append(link);
      $("results").append(item);
    }
  }
}

async function* serverSentEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6)).join("");
      if (!data) continue;  // a keep-alive comment
      if (data === "[DONE]") return;
      yield JSON.parse(data);
    }
  }
}

// --- videos: a job, polled -----------------------------------------------------------------------------------
async function runVideo() {
  const form = new FormData();
  Object.entries({ ...commonFields(), model: modelId }).forEach(([name, value]) => form.append(name, String(value)));
  if ($("seconds").value.trim()) form.append("seconds", $("seconds").value.trim());
  if (files.length) form.append("input_reference", files[0]);
  const created = await fetch("/v1/videos", { method: "POST", headers: authHeaders(), body: form });
  if (!created.ok) return showError(await errorMessage(created));
  let video = await created.json();
  $("job").hidden = false;
  for (;;) {
    $("progress").value = video.progress;
    $("job-status").textContent = `${video.status.replace("_", " ")}: ${video.progress}%`;
    if (video.status === "completed" || video.status === "failed") break;
    const response = await fetch(`/v1/videos/${video.id}`, { headers: authHeaders() });
    if (!response.ok) return showError(await errorMessage(response));
    const wait = Number(response.headers.get("openai-poll-after-ms") || 1000);
    video = await response.json();
    if (video.status !== "completed" && video.status !== "failed") await new Promise((done) => setTimeout(done, wait));
  }
  if (video.status === "failed") return showError(video.error ? video.error.message : "The video failed.");
  const content = await fetch(`/v1/videos/${video.id}/content`, { headers: authHeaders() });
  if (!content.ok) return showError(await errorMessage(content));
  const url = URL.createObjectURL(await content.blob());
  const player = Object.assign(document.createElement("video"), { src: url, controls: true, loop: true });
  player.setAttribute("aria-label", "generated video");
  const link = Object.assign(document.createElement("a"), { href: url, download: `${video.id}.mp4`, textContent: "download" });
  const item = figure(player, `${video.size}, ${video.seconds} s `);
  item.querySelector("figcaption").append(link);
  $("results").append(item);
}

async function generate(event) {
  event.preventDefault();
  $("error").hidden = true;
  $("job").hidden = true;
  $("results").replaceChildren();
  $("results").dataset.partials = "0";
  if (!caps) return showError("The model is not loaded yet; reload the page in a moment.");
  if (!$("prompt").value.trim()) return showError("Write a prompt first.");
  $("generate").disabled = true;
  try {
    await (isVideoModel() ? runVideo() : runImages());
  } catch (error) {
    showError(`The request failed: ${error.message}`);
  } finally {
    $("generate").disabled = false;
  }
}

function setUp() {
  $("api-key").value = localStorage.getItem(KEY_STORAGE) || "";
  $("api-key").addEventListener("change", () => {
    localStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
    loadModel();
  });
  $("form").addEventListener("submit", generate);
  $("images").addEventListener("change", () => setFiles($("images").files));
  const drop = $("drop");
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); $("images").click(); }
  });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    setFiles(event.dataTransfer.files);
  });
  loadModel();
}

document.addEventListener("DOMContentLoaded", setUp);
