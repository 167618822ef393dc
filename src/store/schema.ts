import type { Generated } from 'kysely';

/** Row shapes of the database, as Kysely sees them (snake_case columns, ms timestamps). */
export interface TasksTable {
  seq: Generated<number>;
  id: string;
  kind: string;
  name: string;
  creator_id: number;
  creator: string;
  creator_role: number;
  state: string;
  /** 1 when `state` is succeeded/canceled/failed; indexed for the done/undone split. */
  done: number;
  status: string;
  error: string;
  /** ferry's error code (`E_NOT_FOUND`…) of the last failure; dialects map it to their own codes. */
  error_code: string;
  total_bytes: number;
  done_bytes: number;
  total_files: number;
  done_files: number;
  failed_files: number;
  speed: number;
  payload: string;
  failures: string;
  attempts: number;
  /** Times the process running the task died (lease reclaimed); past `maxInterruptions` it fails. */
  interruptions: number;
  max_retry: number;
  run_at: number;
  lease_owner: string | null;
  lease_until: number | null;
  /** Bumped by every claim: a write names its attempt (owner + token), so a stale holder writes nothing. */
  lease_token: Generated<number>;
  /**
   * PostgreSQL: the id of the transaction that inserted the row (0 on SQLite), the key of
   * KooDrive's pages that stay stable under concurrent inserts.
   */
  insert_xid: Generated<number>;
  cancel_requested: number;
  delete_requested: number;
  created_at: number;
  start_time: number | null;
  end_time: number | null;
  updated_at: number;
}

export interface UsersTable {
  id: Generated<number>;
  username: string;
  password_hash: string;
  /** Bumped when the password changes: tokens carry it, so old tokens stop working. */
  password_ts: number;
  /**
   * scrypt of AList's static hash of the password (`staticHash` in `auth/passwords.ts`), which is
   * what `/api/auth/login/hash` sends; '' while unknown (set before migration 3, not used since).
   */
  static_hash: string;
  base_path: string;
  role: number;
  permission: number;
  disabled: number;
  created_at: number;
}

export interface StoragesTable {
  id: Generated<number>;
  mount_path: string;
  driver: string;
  addition: string;
  order: number;
  remark: string;
  disabled: number;
  modified: number;
  /** AList's common storage fields ferry keeps but does not act on (`StorageOptions`), as JSON. */
  options: string;
}

export interface MetaTable {
  key: string;
  value: string;
}

/** A token ended by a logout, kept until the time it would have expired anyway. */
export interface RevokedTokensTable {
  /** The token's `jti` (tokens issued before ids existed: `sha256:` and the token's digest). */
  token_id: string;
  /** The token's own expiry (ms); the row is pruned after it. */
  expires_at: number;
}

/** A saved transfer (`src/jobs/`): options and schedule as JSON, times in ms. */
export interface JobsTable {
  id: string;
  owner_id: number;
  name: string;
  mode: string;
  /** Virtual paths (below the owner's base path). */
  src_dir: string;
  dst_dir: string;
  /** `JobOptions` as JSON. */
  options: string;
  /** `JobSchedule` as JSON, or null for a job run only by hand. */
  schedule: string | null;
  enabled: number;
  /** The next due slot (ms); nodes claim it by compare-and-set. Null without a schedule. */
  next_run_at: number | null;
  created_at: number;
  updated_at: number;
}

/** A webhook subscription (migration 6). */
export interface WebhooksTable {
  id: Generated<number>;
  url: string;
  /** The HMAC key of `X-Ferry-Signature`; never shown back in full. */
  secret: string;
  /** JSON array of event names. */
  events: string;
  /** JSON array of task kinds; `[]`: every kind. */
  kinds: string;
  enabled: number;
  created_at: number;
  updated_at: number;
}

/** One run of a job: a task it started, or a due slot skipped because the last run was going. */
export interface JobRunsTable {
  id: Generated<number>;
  job_id: string;
  /** The schedule slot (ms) that started it; null for a run asked by hand. Unique per job. */
  slot: number | null;
  task_id: string | null;
  /** `started` or `skipped`. */
  state: string;
  error: string;
  created_at: number;
}

/** One event for one webhook: the outbox row, written in the transaction of what it reports. */
export interface WebhookDeliveriesTable {
  seq: Generated<number>;
  /** `X-Ferry-Delivery`: the same on every attempt. */
  id: string;
  webhook_id: number;
  event: string;
  /** The exact JSON body sent on every attempt. */
  body: string;
  /** `pending` (to be sent at `next_attempt_at`), `delivered` or `failed` (retries used up). */
  state: string;
  attempts: number;
  next_attempt_at: number | null;
  /** After this a failed attempt ends the delivery `failed` instead of scheduling another. */
  give_up_at: number;
  /** Set while one dispatcher sends an attempt: others pass it over until then. */
  lease_until: number | null;
  delivered_at: number | null;
  created_at: number;
}

/** How one attempt of a delivery ended. */
export interface WebhookAttemptsTable {
  seq: Generated<number>;
  delivery_id: string;
  attempt: number;
  status_code: number | null;
  error: string;
  duration_ms: number;
  /** When the next attempt was scheduled for (null: delivered, or given up). */
  next_attempt_at: number | null;
  delivered_at: number | null;
  at: number;
}

/** A running ferry process (a node), renewed with its leases; gone once it stops renewing. */
export interface NodesTable {
  id: string;
  host: string;
  pid: number;
  started_at: number;
  heartbeat_at: number;
  /** Worker limits per kind, as JSON. */
  workers: string;
  /** Running tasks per kind, as JSON. */
  running: string;
}

export interface Database {
  jobs: JobsTable;
  job_runs: JobRunsTable;
  tasks: TasksTable;
  webhooks: WebhooksTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_attempts: WebhookAttemptsTable;
  nodes: NodesTable;
  users: UsersTable;
  revoked_tokens: RevokedTokensTable;
  storages: StoragesTable;
  meta: MetaTable;
}
