import ssh2 from 'ssh2';

type KeyOptions = { passphrase: string; cipher: string; rounds: number };

/**
 * An ed25519 key pair from ssh2's `generateKeyPairSync`, checked by ssh2's own `parseKey`: about
 * 1 key in 200 that ssh2 1.17 makes fails to parse ("Malformed OpenSSH private key"), which made
 * a test that uses one fail at random. Such a key is made again.
 */
export function sshKeyPair(options?: KeyOptions): { private: string; public: string } {
  for (let attempt = 0; attempt < 20; attempt++) {
    const keys = options
      ? ssh2.utils.generateKeyPairSync('ed25519', options)
      : ssh2.utils.generateKeyPairSync('ed25519');
    if (!(ssh2.utils.parseKey(keys.private, options?.passphrase) instanceof Error)) return keys;
  }
  throw new Error('ssh2 made 20 ed25519 keys it cannot parse');
}
