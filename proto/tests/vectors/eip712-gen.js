// Writes eip712.json: eth_signTypedData_v4 documents with the signing hash MetaMask's
// @metamask/eth-sig-util computes for each (TypedDataUtils.eip712Hash, version V4).
// The nodes never run this: proto/tests/eip712_vectors.rs compares their hash with it.
//   cd $(mktemp -d) && npm install @metamask/eth-sig-util@8.2.0 && cp <this file> gen.js && node gen.js > eip712.json
const { TypedDataUtils, SignTypedDataVersion } = require('@metamask/eth-sig-util');

const domainType = (fields) =>
  [['name', 'string'], ['version', 'string'], ['chainId', 'uint256'],
   ['verifyingContract', 'address'], ['salt', 'bytes32']]
    .filter(([n]) => fields.includes(n))
    .map(([name, type]) => ({ name, type }));

const docs = [];
const add = (name, types, primaryType, domain, message) =>
  docs.push({ name, typed_data: {
    types: { EIP712Domain: domainType(Object.keys(domain)), ...types },
    primaryType, domain, message } });

const person = [{ name: 'name', type: 'string' }, { name: 'wallet', type: 'address' }];
add('mail', {
  Person: person,
  Mail: [{ name: 'from', type: 'Person' }, { name: 'to', type: 'Person' }, { name: 'contents', type: 'string' }],
}, 'Mail', { name: 'Ether Mail', version: '1', chainId: 1, verifyingContract: '0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC' }, {
  from: { name: 'Cow', wallet: '0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826' },
  to: { name: 'Bob', wallet: '0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB' },
  contents: 'Hello, Bob!',
});
add('mail with arrays of structs and addresses', {
  Person: [{ name: 'name', type: 'string' }, { name: 'wallets', type: 'address[]' }],
  Mail: [{ name: 'from', type: 'Person' }, { name: 'to', type: 'Person[]' }, { name: 'contents', type: 'string' }],
  Group: [{ name: 'name', type: 'string' }, { name: 'members', type: 'Person[]' }],
}, 'Mail', { name: 'Ether Mail', version: '1', chainId: 1, verifyingContract: '0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC' }, {
  from: { name: 'Cow', wallets: ['0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826', '0xDeaDbeefdEAdbeefdEadbEEFdeadbeEFdEaDbeeF'] },
  to: [{ name: 'Bob', wallets: ['0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB', '0xB0BdaBea57B0BDABeA57b0bdABEA57b0BDabEa57', '0xB0B0b0b0b0b0B000000000000000000000000000'] }],
  contents: 'Hello, Bob!',
});
add('EIP-2612 permit', {
  Permit: [{ name: 'owner', type: 'address' }, { name: 'spender', type: 'address' }, { name: 'value', type: 'uint256' },
           { name: 'nonce', type: 'uint256' }, { name: 'deadline', type: 'uint256' }],
}, 'Permit', { name: 'USD Coin', version: '2', chainId: 1, verifyingContract: '0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48' }, {
  owner: '0x1111111111111111111111111111111111111111', spender: '0x2222222222222222222222222222222222222222',
  value: '1000000000', nonce: 3, deadline: '1893456000',
});
add('Permit2 PermitSingle (no version in the domain)', {
  PermitDetails: [{ name: 'token', type: 'address' }, { name: 'amount', type: 'uint160' },
                  { name: 'expiration', type: 'uint48' }, { name: 'nonce', type: 'uint48' }],
  PermitSingle: [{ name: 'details', type: 'PermitDetails' }, { name: 'spender', type: 'address' }, { name: 'sigDeadline', type: 'uint256' }],
}, 'PermitSingle', { name: 'Permit2', chainId: 1, verifyingContract: '0x000000000022D473030F116dDEE9F6B43aC78BA3' }, {
  details: { token: '0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48', amount: '1461501637330902918203684832716283019655932542975',
             expiration: 1893456000, nonce: 0 },
  spender: '0x3fC91A3afd70395Cd496C647d5a6CC9D4B2b7FAD', sigDeadline: '1893456000',
});
add('scalars of every kind, domain with a salt', {
  Scalars: [{ name: 'flag', type: 'bool' }, { name: 'small', type: 'uint8' }, { name: 'negative', type: 'int256' },
            { name: 'tiny', type: 'int8' }, { name: 'blob', type: 'bytes' }, { name: 'word', type: 'bytes32' },
            { name: 'short', type: 'bytes4' }, { name: 'empty', type: 'string' }, { name: 'text', type: 'string' },
            { name: 'who', type: 'address' }],
}, 'Scalars', { name: 'Scalars', version: '7', chainId: 11155111, verifyingContract: '0x4444444444444444444444444444444444444444',
  salt: '0x' + 'ab'.repeat(32) }, {
  flag: true, small: 255, negative: '-123456789012345678901234567890', tiny: -128,
  blob: '0xdeadbeef00', word: '0x' + '01'.repeat(32), short: '0xcafebabe', empty: '', text: 'naïve ✓',
  who: '0x5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a',
});
add('nested and fixed-size arrays', {
  Grid: [{ name: 'rows', type: 'uint256[][]' }, { name: 'pair', type: 'address[2]' }, { name: 'tags', type: 'bytes32[]' },
         { name: 'items', type: 'Item[]' }],
  Item: [{ name: 'id', type: 'uint64' }, { name: 'notes', type: 'string[]' }],
}, 'Grid', { chainId: 137, verifyingContract: '0x7777777777777777777777777777777777777777' }, {
  rows: [[1, 2, 3], [], ['115792089237316195423570985008687907853269984665640564039457584007913129639935']],
  pair: ['0x1111111111111111111111111111111111111111', '0x2222222222222222222222222222222222222222'],
  tags: [], items: [{ id: 1, notes: ['a', 'b'] }, { id: '18446744073709551615', notes: [] }],
});
add('an order with nested struct arrays (types declared out of order)', {
  OrderComponents: [{ name: 'offerer', type: 'address' }, { name: 'offer', type: 'OfferItem[]' },
                    { name: 'consideration', type: 'ConsiderationItem[]' }, { name: 'startTime', type: 'uint256' },
                    { name: 'endTime', type: 'uint256' }, { name: 'counter', type: 'uint256' }],
  ConsiderationItem: [{ name: 'itemType', type: 'uint8' }, { name: 'token', type: 'address' }, { name: 'amount', type: 'uint256' },
                      { name: 'recipient', type: 'address' }],
  OfferItem: [{ name: 'itemType', type: 'uint8' }, { name: 'token', type: 'address' }, { name: 'amount', type: 'uint256' }],
}, 'OrderComponents', { name: 'Seaport', version: '1.5', chainId: 1, verifyingContract: '0x00000000000000ADc04C56Bf30aC9d3c0aAF14dC' }, {
  offerer: '0x1111111111111111111111111111111111111111',
  offer: [{ itemType: 1, token: '0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48', amount: '5000000' }],
  consideration: [{ itemType: 0, token: '0x0000000000000000000000000000000000000000', amount: '1000000000000000', recipient: '0x1111111111111111111111111111111111111111' },
                  { itemType: 0, token: '0x0000000000000000000000000000000000000000', amount: '25000000000000', recipient: '0x0000a26b00c1F0DF003000390027140000fAa719' }],
  startTime: 1700000000, endTime: '1893456000', counter: 0,
});
add('a type whose name sorts before the primary type it depends on', {
  Zeta: [{ name: 'a', type: 'Alpha' }, { name: 'b', type: 'Beta' }, { name: 'n', type: 'uint256' }],
  Beta: [{ name: 'x', type: 'bytes' }, { name: 'a', type: 'Alpha' }],
  Alpha: [{ name: 'v', type: 'string' }],
}, 'Zeta', { name: 'Deps', chainId: 1 }, {
  a: { v: 'first' }, b: { x: '0x', a: { v: 'second' } }, n: 42,
});

const out = docs.map(({ name, typed_data }) => ({
  name, typed_data,
  hash: '0x' + TypedDataUtils.eip712Hash(typed_data, SignTypedDataVersion.V4).toString('hex'),
}));
process.stdout.write(JSON.stringify({
  source: '@metamask/eth-sig-util 8.2.0, TypedDataUtils.eip712Hash(doc, V4)',
  vectors: out,
}, null, 2) + '\n');
