// wllama's binary message format ("GLUE", cpp/glue.hpp in @wllama/wllama), for the few messages the
// edge exchanges with the wasm: "GLUE", a u32 version, an 8-byte message name, then every field of
// the message in declaration order as a u32 type tag and its value (little-endian). A null field
// is the tag alone. Field lists must match the C++ structs exactly, in order.
const MAGIC = [71, 76, 85, 69];
const VERSION = 1;
const TAG = {
  null: 0, bool: 1, int: 2, float: 3, str: 4, raw: 5,
  arr_bool: 6, arr_int: 7, arr_float: 8, arr_str: 9, arr_raw: 10,
};
const TYPE_OF_TAG = Object.fromEntries(Object.entries(TAG).map(([type, tag]) => [tag, type]));

const f = (type, name) => ({ type, name });
// Nullable fields: every one the C++ struct declares with GLUE_FIELD_NULLABLE.
const opt = (type, name) => ({ type, name, nullable: true });

const LOAD_OPTIONAL = [
  ["int", "log_level"], ["bool", "embeddings"], ["bool", "offload_kqv"], ["int", "n_batch"],
  ["int", "n_ubatch"], ["int", "n_parallel"], ["str", "pooling_type"], ["str", "rope_scaling_type"],
  ["float", "rope_freq_base"], ["float", "rope_freq_scale"], ["float", "yarn_ext_factor"],
  ["float", "yarn_attn_factor"], ["float", "yarn_beta_fast"], ["float", "yarn_beta_slow"],
  ["int", "yarn_orig_ctx"], ["str", "cache_type_k"], ["str", "cache_type_v"], ["bool", "kv_unified"],
  ["bool", "flash_attn"], ["bool", "swa_full"], ["int", "n_ctx_checkpoints"],
  ["int", "checkpoint_min_step"], ["str", "chat_template"], ["bool", "jinja"],
  ["arr_str", "default_template_kwargs_keys"], ["arr_str", "default_template_kwargs_vals"],
  ["bool", "reasoning"], ["int", "image_min_tokens"], ["int", "image_max_tokens"], ["bool", "warmup"],
  ["bool", "no_kv_offload"], ["bool", "mmproj_offload"], ["bool", "cont_batching"], ["int", "n_keep"],
  ["bool", "ctx_shift"], ["bool", "cache_idle_slots"], ["int", "n_cache_reuse"],
  ["arr_str", "lora_paths"], ["arr_float", "lora_scales"], ["bool", "lora_init_without_apply"],
  ["str", "spec_draft_model"], ["int", "spec_draft_ngl"], ["int", "spec_draft_n_max"],
  ["int", "spec_draft_n_min"], ["float", "spec_draft_p_min"], ["int", "spec_draft_threads"],
  ["int", "spec_draft_threads_batch"], ["arr_str", "kv_overrides_keys"],
  ["arr_str", "kv_overrides_vals"], ["int", "reasoning_budget_tokens"],
  ["str", "reasoning_budget_message"], ["str", "reasoning_format"], ["bool", "skip_chat_parsing"],
  ["bool", "prefill_assistant"],
].map(([type, name]) => opt(type, name));

export const MESSAGES = {
  load_req: [
    f("arr_str", "model_paths"), opt("str", "mmproj_path"), f("bool", "n_ctx_auto"),
    f("bool", "use_mmap"), f("bool", "use_mlock"), f("int", "n_gpu_layers"), f("int", "n_ctx"),
    f("int", "n_threads"), opt("str", "model_alias"), ...LOAD_OPTIONAL,
  ],
  load_res: [
    f("bool", "success"), f("int", "n_ctx"), f("int", "n_batch"), f("int", "n_ubatch"),
    f("int", "n_vocab"), f("int", "n_ctx_train"), f("int", "n_embd"), f("int", "n_layer"),
    f("arr_str", "metadata_key"), f("arr_str", "metadata_val"), f("int", "token_bos"),
    f("int", "token_eos"), f("int", "token_eot"), f("arr_int", "list_tokens_eog"),
    f("bool", "add_bos_token"), f("bool", "add_eos_token"), f("bool", "has_encoder"),
    f("int", "token_decoder_start"), f("str", "media_marker"), f("bool", "has_image_input"),
    f("bool", "has_audio_input"),
  ],
  cmpl_req: [f("bool", "is_chat"), f("str", "data_json"), f("arr_raw", "files")],
  cmpl_res: [f("bool", "success"), f("int", "req_id")],
  gres_req: [f("int", "req_id")],
  gres_res: [f("bool", "success"), f("bool", "has_more"), f("bool", "is_error"), f("str", "data_json")],
  cncl_req: [f("int", "req_id")],
  cncl_res: [f("bool", "success")],
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encode(name, message) {
  const fields = MESSAGES[name];
  if (!fields || name.length !== 8) throw new TypeError(`unknown message ${name}`);
  const parts = [];
  const u32 = (value, signed = false) => {
    const bytes = new Uint8Array(4);
    const view = new DataView(bytes.buffer);
    if (signed) view.setInt32(0, value, true);
    else view.setUint32(0, value, true);
    parts.push(bytes);
  };
  const str = (value) => {
    const bytes = encoder.encode(value);
    u32(bytes.byteLength);
    parts.push(bytes);
  };
  parts.push(new Uint8Array(MAGIC));
  u32(VERSION);
  parts.push(encoder.encode(name));
  for (const { type, name: field, nullable } of fields) {
    const value = message[field];
    if (value === null || value === undefined) {
      if (!nullable) throw new TypeError(`${name}.${field} is required`);
      u32(TAG.null);
      continue;
    }
    u32(TAG[type]);
    if (type === "bool") u32(value ? 1 : 0);
    else if (type === "int") u32(value, true);
    else if (type === "str") str(value);
    else if (type === "arr_str") {
      u32(value.length);
      value.forEach(str);
    } else if (type === "arr_raw") {
      u32(value.length);
      for (const bytes of value) {
        u32(bytes.byteLength);
        parts.push(bytes);
      }
    } else throw new TypeError(`${name}.${field}: encoding ${type} is not needed at the edge`);
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

export function decode(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 0;
  const u32 = () => {
    const value = view.getUint32(offset, true);
    offset += 4;
    return value;
  };
  const i32 = () => {
    const value = view.getInt32(offset, true);
    offset += 4;
    return value;
  };
  const str = (length = u32()) => {
    const value = decoder.decode(bytes.subarray(offset, offset + length));
    offset += length;
    return value;
  };
  const array = (item) => Array.from({ length: u32() }, item);
  if (MAGIC.some((byte, i) => bytes[i] !== byte)) throw new Error("not a GLUE message");
  offset = 4;
  if (u32() !== VERSION) throw new Error("unsupported GLUE version");
  const name = str(8);
  const fields = MESSAGES[name];
  if (!fields) throw new Error(`unknown GLUE message ${name}`);
  const out = { _name: name };
  for (const { type, name: field } of fields) {
    const tag = u32();
    if (tag === TAG.null) {
      out[field] = null;
      continue;
    }
    if (TYPE_OF_TAG[tag] !== type) throw new Error(`${name}.${field}: expected ${type}`);
    if (type === "bool") out[field] = u32() !== 0;
    else if (type === "int") out[field] = i32();
    else if (type === "str") out[field] = str();
    else if (type === "arr_str") out[field] = array(() => str());
    else if (type === "arr_int") out[field] = array(i32);
    else throw new Error(`${name}.${field}: decoding ${type} is not needed at the edge`);
  }
  return out;
}
