/** The keep-alive http(s) agents of the WebDAV driver, which destroy connections gone silent. */
import type { Agent as HttpAgent } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import type { Socket } from 'node:net';

/**
 * A connection on which no byte moved either way for this long is dead: it is destroyed and the
 * operation fails with E_BACKEND (node-fetch has no timeouts of its own). Generous, because a
 * server-side COPY of a large file sends nothing until it is done, and a reader of `read()` may
 * pause that long.
 */
const IDLE_TIMEOUT_MS = 5 * 60_000;

/** An http(s) agent whose sockets are destroyed after IDLE_TIMEOUT_MS without traffic. */
export function idleAgent<A extends typeof HttpAgent | typeof HttpsAgent>(
  Agent: A,
  options: { rejectUnauthorized?: boolean },
): HttpAgent {
  const agent = new Agent({ keepAlive: true, timeout: IDLE_TIMEOUT_MS, ...options });
  const create = agent.createConnection.bind(agent);
  agent.createConnection = (opts, callback) => {
    const socket = create(opts, callback) as Socket | null | undefined;
    socket?.on('timeout', () => {
      const error = Object.assign(new Error(`no traffic for ${IDLE_TIMEOUT_MS / 1000} s`), {
        code: 'ETIMEDOUT',
      });
      socket.destroy(error);
    });
    return socket;
  };
  return agent;
}
