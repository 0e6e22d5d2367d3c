// Type declarations of @alyx/functions.

/** A field as schema.yaml writes it: `{ type: "uuid" }`, `{ type: "string", maxLength: 200 }`. */
export interface FieldSpec {
  type: "uuid" | "string" | "text" | "int" | "float" | "bool" | "timestamp" | "json" | "blob";
  nullable?: boolean;
  default?: unknown;
  minLength?: number;
  maxLength?: number;
  min?: number;
  max?: number;
  pattern?: string;
  enum?: unknown[];
  format?: "email" | "url" | "uuid";
}

export type Fields = Record<string, FieldSpec>;

/** The signed-in caller, or null when the call is anonymous. */
export interface Auth {
  id: string;
  email: string;
  role: string;
  verified: boolean;
  metadata: Record<string, unknown>;
  app_metadata: Record<string, unknown>;
}

export type Doc = Record<string, unknown>;

/** `{field: value}` or `{field: {$op: value}}` with the operators of live queries. */
export type Filter = Record<string, unknown>;

export interface FindOptions {
  sort?: string | string[];
  limit?: number;
  offset?: number;
}

export interface CollectionClient<T extends Doc = Doc> {
  find(filter?: Filter | string[] | null, options?: FindOptions): Promise<T[]>;
  /** The document, or null when it does not exist or the caller may not read it. */
  get(id: string | number): Promise<T | null>;
  create(data: Partial<T>): Promise<T>;
  update(id: string | number, changes: Partial<T>): Promise<T>;
  delete(id: string | number): Promise<null>;
}

export interface Operation {
  method: "GET" | "POST" | "PATCH" | "DELETE";
  collection: string;
  id?: string | number;
  body?: Doc;
}

export interface Database {
  collection<T extends Doc = Doc>(name: string): CollectionClient<T>;
  /** Apply the operations atomically: all of them or none; resolves to their result bodies. */
  transaction(operations: Operation[]): Promise<unknown[]>;
  [collection: string]: CollectionClient | Database["collection"] | Database["transaction"];
}

export interface Logger {
  debug(...parts: unknown[]): void;
  info(...parts: unknown[]): void;
  warn(...parts: unknown[]): void;
  error(...parts: unknown[]): void;
}

export interface EnqueueOptions {
  /** Seconds (or a duration such as "5m") before the job may run. */
  delay?: number | string;
  /** While a queued or running job of this name holds this key, enqueue returns that job. */
  dedupeKey?: string;
}

export interface Jobs {
  /** Queue a job: a function whose manifest has a `job:` section. */
  enqueue(name: string, payload?: Record<string, unknown>, options?: EnqueueOptions):
    Promise<{ id: string; created: boolean }>;
}

/** The job being run, when this invocation is a job's run. */
export interface JobInfo {
  id: string;
  name: string;
  attempt: number;
}

export interface Context {
  auth: Auth | null;
  env: Readonly<Record<string, string>>;
  log: Logger;
  db: Database & Record<string, CollectionClient>;
  jobs: Jobs;
  job: JobInfo | null;
  requestId: string;
}

export interface FunctionDefinition<I = Record<string, unknown>, O = unknown> {
  input?: Fields;
  output?: Fields;
  handler(input: I, ctx: Context): O | Promise<O>;
}

export declare function defineFunction<I = Record<string, unknown>, O = unknown>(
  definition: FunctionDefinition<I, O>,
): FunctionDefinition<I, O>;

/** An error answered by the server: `code` such as FORBIDDEN or VALIDATION_ERROR. */
export declare class AlyxError extends Error {
  code: string;
  status: number;
  details: unknown[];
  constructor(message: string, options?: { code?: string; status?: number; details?: unknown[] });
}

declare const sdk: { defineFunction: typeof defineFunction; AlyxError: typeof AlyxError };
export default sdk;
