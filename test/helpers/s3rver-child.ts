/**
 * An s3rver (S3 protocol on loopback, fixed credentials S3RVER/S3RVER) in its own process: the
 * `drivers` benchmark runs it so its CPU time is not charged to the runner's event loop, and the
 * fault tests kill it with SIGKILL mid-transfer and start it again on the same port and folder.
 *
 *   node --import tsx test/helpers/s3rver-child.ts <directory> <bucket> [<port>]
 *
 * Prints `port <n>` on stdout once listening; stops on SIGTERM/SIGINT or when stdin closes.
 */
// s3rver ships no types; what is used here is small and stable.
// @ts-expect-error untyped package
import S3rver from 's3rver';

const [directory, bucket, port = '0'] = process.argv.slice(2);
if (!directory || !bucket) {
  process.stderr.write('usage: s3rver-child.ts <directory> <bucket> [<port>]\n');
  process.exit(2);
}

const server = new S3rver({
  port: Number(port),
  address: '127.0.0.1',
  silent: true,
  directory,
  configureBuckets: [{ name: bucket }],
});
const listening = (await server.run()) as { port: number };
process.stdout.write(`port ${listening.port}\n`);

const stop = () => {
  void server.close().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// The parent died without signalling: do not outlive it.
process.stdin.on('end', stop);
process.stdin.resume();
