/**
 * moekit's HTTP front on node:http: POST /v1/forward (lib/serve/forward_request.ts) through a
 * ForwardBatcher, GET /metrics (Prometheus), GET /healthz. Every bad request gets a 4xx with
 * {"error": message, "code": code} naming the problem; nothing a client sends can stop the server.
 */
import * as http from 'node:http';

import { MoekitError } from '../errors';
import { memoryInfo } from '../memory';
import type { ForwardBatcher } from './forward_batcher';
import { encodeForwardResponse, isJsonContentType, parseForwardRequest } from './forward_request';
import type { LayerStats } from './layer_stats';
import { PROMETHEUS_CONTENT_TYPE, toPrometheus } from './prometheus';

export interface ForwardServerOptions {
  batcher: ForwardBatcher;
  /** Shown on /metrics when given (and read there: each scrape is a load-imbalance window). */
  stats?: LayerStats;
  /** Largest request body taken, in bytes; larger ones get 413. Default 64 MiB. */
  maxBodyBytes?: number;
}

export const DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024;
const IDLE_SWEEP_MS = 50;

/** HTTP status for each way a request can fail; codes not listed are the server's fault (500). */
const STATUS_BY_CODE: Partial<Record<string, number>> = {
  E_INVALID_ARGUMENT: 400,
  E_SAFETENSORS: 400,
  E_SHAPE: 400,
  E_DTYPE: 400,
  E_BODY_TOO_LARGE: 413,
  E_QUEUE_FULL: 503,
  E_CLOSED: 503,
};

class HttpProblem extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

function problemOf(error: unknown): HttpProblem {
  if (error instanceof HttpProblem) return error;
  if (error instanceof MoekitError) return new HttpProblem(STATUS_BY_CODE[error.code] ?? 500, error.code, error.message);
  return new HttpProblem(500, 'E_INTERNAL', error instanceof Error ? error.message : String(error));
}

function send(response: http.ServerResponse, status: number, contentType: string, body: string | Buffer, headers: http.OutgoingHttpHeaders = {}): void {
  if (response.headersSent) return;
  response.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), ...headers });
  response.end(body);
}

function sendProblem(response: http.ServerResponse, problem: HttpProblem): void {
  const headers: http.OutgoingHttpHeaders = problem.status === 503 ? { 'retry-after': '1' } : {};
  // A body too large is left unread: the connection cannot be reused.
  if (problem.status === 413) headers.connection = 'close';
  send(response, problem.status, 'application/json', JSON.stringify({ error: problem.message, code: problem.code }), headers);
}

/** The whole body, or a 413 problem as soon as it is known to pass `limit` bytes. */
function readBody(request: http.IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = (): HttpProblem => new HttpProblem(413, 'E_BODY_TOO_LARGE', `request body is larger than the server's limit of ${limit} bytes (--max-body-bytes)`);
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    request.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received > limit) {
        request.removeAllListeners('data');
        request.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => resolve(Buffer.concat(chunks, received)));
    request.on('error', reject);
  });
}

/** An HTTP server answering forwards through `batcher`; listen() it, and shut it down with shutdownForwardServer. */
export function createForwardServer(options: ForwardServerOptions): http.Server {
  const { batcher, stats } = options;
  const responses = new Map<number, number>();
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const hidden = batcher.layer.config.hiddenSize;

  const forward = async (request: http.IncomingMessage, response: http.ServerResponse): Promise<void> => {
    const body = await readBody(request, maxBodyBytes);
    const parsed = parseForwardRequest(body, isJsonContentType(request.headers['content-type']), hidden);
    const result = await batcher.forward(parsed.rows, { dtype: parsed.dtype });
    const answer = encodeForwardResponse(result, parsed.format, hidden);
    send(response, 200, answer.contentType, answer.body);
  };

  const metrics = async (response: http.ServerResponse): Promise<void> => {
    const layer = stats ? await stats.read() : undefined;
    const text = toPrometheus({ batcher: batcher.metrics(), layer, httpResponses: responses, memory: [memoryInfo(batcher.layer.device)] });
    send(response, 200, PROMETHEUS_CONTENT_TYPE, text);
  };

  const route = async (request: http.IncomingMessage, response: http.ServerResponse): Promise<void> => {
    const path = (request.url ?? '/').split('?')[0];
    const allow = (method: string): void => {
      if (request.method !== method) throw new HttpProblem(405, 'E_METHOD', `${path} takes ${method}, not ${request.method ?? 'no method'}`);
    };
    switch (path) {
      case '/v1/forward': allow('POST'); return forward(request, response);
      case '/metrics': allow('GET'); return metrics(response);
      case '/healthz':
        allow('GET');
        if (batcher.closed) throw new HttpProblem(503, 'E_CLOSED', 'shutting down');
        return send(response, 200, 'application/json', '{"status":"ok"}');
      default: throw new HttpProblem(404, 'E_NOT_FOUND', `no route ${path} (routes: POST /v1/forward, GET /metrics, GET /healthz)`);
    }
  };

  return http.createServer((request, response) => {
    response.once('finish', () => responses.set(response.statusCode, (responses.get(response.statusCode) ?? 0) + 1));
    route(request, response).catch((error: unknown) => sendProblem(response, problemOf(error)));
  });
}

/** Stops accepting connections, answers what is queued, and resolves once every connection has closed. */
export async function shutdownForwardServer(server: http.Server, batcher: ForwardBatcher): Promise<void> {
  let done = false;
  const closed = new Promise<void>((resolve) => server.close(() => resolve())).then(() => {
    done = true;
  });
  // Connections kept alive after their last answer would hold close() open: close them as they go idle.
  const sweep = setInterval(() => server.closeIdleConnections(), IDLE_SWEEP_MS);
  try {
    server.closeIdleConnections();
    await batcher.close({ drain: true });
    if (!done) await closed;
  } finally {
    clearInterval(sweep);
  }
}
