// Types of web/qgpu.js: the Qgpu (language model) and QgpuEmbedder (encoder) classes.

import type { HfFiles, LoadProgress } from './engine';

/** One model file: a URL, a File/Blob, a Response, or bytes. */
export type Source = string | URL | Blob | Response | Uint8Array | ArrayBuffer;

export interface GenerateOptions {
  maxTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
  repeatLastN?: number;
  seed?: number;
  /** Wrap the prompt as a user message in the chat template. */
  chat?: boolean;
  stop?: string[];
  parseSpecial?: boolean;
  /** Continue this chat instead of the prompt; earlier turns keep their KV cache. */
  messages?: { role: string; content: string }[];
}

export interface GenerationStats {
  promptTokens: number;
  cachedTokens: number;
  prefillSeconds: number;
  prefillTokensPerSecond: number;
  generatedTokens: number;
  decodeSteps: number;
  decodeSeconds: number;
  decodeTokensPerSecond: number;
  stop: 'endOfText' | 'stopString' | 'maxTokens' | 'contextFull' | 'cancelled';
  memory: { weights: number; kvCache: number; activations: number };
}

export class Qgpu {
  /** Opens the browser's WebGPU adapter. */
  static create(): Promise<Qgpu>;
  readonly info: Record<string, unknown>;
  readonly model?: Record<string, unknown>;
  deviceLost(): string | undefined;
  /** A GGUF file, or a Hugging Face directory (base URL ending in '/', picked Files, or its files). */
  loadModel(source: Source | FileList | File[] | HfFiles, onProgress?: (p: LoadProgress) => void, options?: { kvType?: 'f32' | 'f16' | 'q8_0' | 'q4_0' }): Promise<Record<string, unknown>>;
  generate(prompt: string, options?: GenerateOptions, onToken?: (piece: string) => boolean | void): Promise<string>;
  cancel(): void;
  stats(): GenerationStats | null;
  unload(): void;
  selfTest(): Promise<Record<string, unknown>>;
  bench(options?: Record<string, unknown>, onProgress?: (line: string) => void): Promise<{ report: unknown; table: string; svg: string }>;
  tune(options?: Record<string, unknown>, onProgress?: (line: string) => void): Promise<unknown>;
  clearTuneCache(): void;
  destroy(): void;
}

export class QgpuEmbedder {
  /** `{gguf}`, or a Hugging Face BERT directory (base URL, picked Files, or its files). */
  static load(files: { gguf: Source } | string | URL | FileList | File[] | HfFiles): Promise<QgpuEmbedder>;
  readonly info: { dim: number; layers: number; heads: number; maxSequence: number; weightBytes: number };
  /** One L2-normalised vector per text. */
  embed(texts: string | string[]): Promise<Float32Array[]>;
  destroy(): void;
}

/** A Hugging Face directory's files, read (text files) or ready to stream (weights). */
export function hfDirectory(source: string | URL | FileList | File[] | HfFiles): Promise<HfFiles & { safetensors: unknown[] }>;
