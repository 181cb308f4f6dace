// Types of web/engine.js: qgpu's OpenAI-style engine.

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | string;
  content: string;
}

export interface ChatCompletionParams {
  messages: ChatMessage[];
  model?: string;
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  /** New tokens at most (default: the model's context). */
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  repetition_penalty?: number;
  seed?: number;
  stop?: string | string[];
  n?: 1;
}

/** OpenAI's (legacy) completions: `prompt` continued as it is, no chat template. */
export type CompletionParams = Omit<ChatCompletionParams, 'messages'> & { prompt: string };

export interface Completion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: { index: 0; text: string; finish_reason: FinishReason | null; logprobs: null }[];
  /** On the whole answer, and on a stream's last chunk (whose `choices` is empty). */
  usage?: Usage;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Prompt tokens whose KV cache was kept from the previous turn. */
  prompt_tokens_details: { cached_tokens: number };
}

export type FinishReason = 'stop' | 'length';

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: { index: 0; message: { role: 'assistant'; content: string }; finish_reason: FinishReason; logprobs: null }[];
  usage: Usage;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: { index: 0; delta: { role?: 'assistant'; content?: string }; finish_reason: FinishReason | null; logprobs: null }[];
  /** On the last chunk (whose `choices` is empty) unless `stream_options.include_usage` is false. */
  usage?: Usage;
}

export interface Embeddings {
  object: 'list';
  model: string;
  data: { object: 'embedding'; index: number; embedding: number[] }[];
}

export interface LoadProgress {
  phase: 'download' | 'upload';
  loaded: number;
  total?: number;
}

export interface ModelInfo {
  name: string;
  architecture: string;
  vocab: number;
  dim: number;
  layers: number;
  ffn: number;
  heads: number;
  kvHeads: number;
  context: number;
  trainedContext: number;
  fileBytes: number;
  kvType: string;
  memory: { weights: number; kvCache: number; activations: number };
  loadSeconds: number;
  /** Bytes downloaded for this load, and bytes read from Cache Storage. */
  networkBytes: number;
  cachedBytes: number;
  /** Files that could not be cached (a quota message says how much space they need). */
  cacheErrors: string[];
  /** WebAssembly memory after the load (the worker's in worker mode): GGUF files stream to the GPU, so it stays far below the file's size. */
  wasmMemoryBytes: number;
}

export interface CachedFile {
  url: string;
  bytes?: number;
  cachedAt?: string;
}

/** A Hugging Face directory named file by file (URLs, Files, Responses or bytes). */
export interface HfFiles {
  safetensors: unknown | unknown[];
  config: unknown;
  tokenizer: unknown;
  tokenizerConfig?: unknown;
  chatTemplate?: unknown;
  sentenceConfig?: unknown;
}

export interface Engine {
  /** Adapter, limits and kernels, and whether the model runs in a worker. */
  readonly info: Record<string, unknown> & { worker: boolean };
  readonly model: ModelInfo | null;
  /** A GGUF URL (a gguf-split model by the URL of any of its files), picked Files, or a Hugging Face directory (base URL ending in '/', or its files). */
  load(source: string | URL | FileList | File[] | HfFiles, options?: { kvType?: 'f32' | 'f16' | 'q8_0' | 'q4_0'; cache?: boolean; sha256?: string; onProgress?: (p: LoadProgress) => void }): Promise<ModelInfo>;
  /** A BERT encoder for `embeddings.create`: `{gguf: url}` or a directory. */
  loadEmbedder(source: string | URL | { gguf: string } | HfFiles, options?: { cache?: boolean }): Promise<Record<string, unknown>>;
  chat: {
    completions: {
      create(params: ChatCompletionParams & { stream: true }, options?: { signal?: AbortSignal }): Promise<AsyncIterable<ChatCompletionChunk>>;
      create(params: ChatCompletionParams & { stream?: false }, options?: { signal?: AbortSignal }): Promise<ChatCompletion>;
    };
  };
  completions: {
    create(params: CompletionParams & { stream: true }, options?: { signal?: AbortSignal }): Promise<AsyncIterable<Completion>>;
    create(params: CompletionParams & { stream?: false }, options?: { signal?: AbortSignal }): Promise<Completion>;
  };
  embeddings: { create(params: { input: string | string[]; model?: string }): Promise<Embeddings> };
  /** Drops the language model and its GPU memory. */
  unload(): Promise<void>;
  /** Bytes of WebAssembly memory where the model runs. */
  memory(): Promise<number>;
  cache: { list(): Promise<CachedFile[]>; delete(url: string): Promise<number> };
  /** Timings of the last generation. */
  stats(): Promise<Record<string, unknown>>;
  terminate(): void;
}

/** An engine with its model in a module Web Worker (default), or on the page's thread. */
export function createEngine(options?: { worker?: boolean }): Promise<Engine>;
