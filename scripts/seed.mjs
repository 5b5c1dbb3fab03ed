#!/usr/bin/env node
// Seeds the local D1 (the one `wrangler dev` uses) with demo data, idempotently:
// fixed ids + INSERT OR IGNORE, so running it again changes nothing.
// Usage: npm run seed:local
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const now = Date.now();
const DAY = 86_400_000;
/** @param {unknown} s */
const q = (s) => `'${String(s).replaceAll("'", "''")}'`;

const products = [
  ["무선 이어폰", "노이즈 캔슬링 블루투스 이어폰", 129000, 120],
  ["기계식 키보드", "갈축, 텐키리스", 89000, 80],
  ["게이밍 마우스", "26K DPI 무선", 59000, 150],
  ["27인치 모니터", "QHD 165Hz IPS", 329000, 40],
  ["USB-C 허브", "7-in-1, 100W PD", 39000, 300],
  ["노트북 거치대", "알루미늄, 높이 조절", 29000, 200],
  ["텀블러", "스테인리스 500ml", 19000, 500],
  ["백팩", "15.6인치 노트북 수납", 69000, 90],
  ["보조배터리", "20,000mAh 고속충전", 35000, 250],
  ["스마트워치", "GPS, 심박 측정", 249000, 60],
  ["블루투스 스피커", "방수 IPX7", 79000, 110],
  ["웹캠", "1080p 60fps", 49000, 130],
  ["LED 데스크 램프", "밝기/색온도 조절", 45000, 140],
  ["무선 충전기", "15W Qi", 25000, 400],
  ["SSD 1TB", "NVMe Gen4", 119000, 70],
  ["HDMI 케이블", "2.1, 2m", 12000, 600],
  ["마우스 패드", "대형 900x400", 15000, 350],
  ["커피 원두", "에티오피아 예가체프 1kg", 32000, 220],
  ["핸드크림", "시어버터 50ml", 9000, 800],
  ["손목 보호대", "메모리폼", 17000, 260],
  ["에어프라이어", "5.5L 디지털", 99000, 50],
  ["전동 칫솔", "음파 진동, 충전식", 69000, 95],
];
/** @type {[string, number][]} [name, balance] */
const users = [
  ["김민수", 1_000_000],
  ["이서연", 500_000],
  ["박지훈", 2_000_000],
  ["최유진", 100_000],
  ["정하늘", 0],
];
// [name, type, value, quantity, startsAt, endsAt, validDays, shards]
const coupons = [
  ["선착순 5,000원 할인", "AMOUNT", 5000, 100, now - DAY, now + 30 * DAY, 7, 1],
  ["선착순 10% 할인", "RATE", 10, 1000, now - DAY, now + 60 * DAY, 14, 1],
  ["다음 주 오픈 20% 할인", "RATE", 20, 50, now + 7 * DAY, now + 14 * DAY, 7, 1],
  // A flash-sale coupon split over 4 CouponIssuer shards (docs/SHARDING.md, "When and how to shard").
  ["타임딜 1,000원 (샤드 4개)", "AMOUNT", 1000, 10_000, now - DAY, now + 30 * DAY, 7, 4],
];

/** @type {string[]} */
const sql = [];
products.forEach(([name, desc, price, stock], i) => {
  sql.push(
    `INSERT OR IGNORE INTO products (id, name, description, price, stock, created_at, updated_at) VALUES (${i + 1}, ${q(name)}, ${q(desc)}, ${price}, ${stock}, ${now}, ${now});`,
    // products.stock is the sum of the stock shards' rows: the unsharded product's one shard holds it all.
    `INSERT OR IGNORE INTO product_stock_shards (product_id, shard, available, stamp) VALUES (${i + 1}, 0, ${stock}, ${now});`,
  );
});
users.forEach(([name, balance], i) => {
  const id = i + 1;
  sql.push(`INSERT OR IGNORE INTO users (id, name, created_at) VALUES (${id}, ${q(name)}, ${now});`);
  // The history row is written only when the balance row is new (changes() = 1), so a re-run adds nothing.
  sql.push(`INSERT OR IGNORE INTO user_balances (user_id, balance, updated_at) VALUES (${id}, ${balance}, ${now});`);
  if (balance > 0) {
    sql.push(
      `INSERT INTO point_history (user_id, type, amount, balance_after, order_id, created_at) SELECT ${id}, 'CHARGE', ${balance}, ${balance}, NULL, ${now} WHERE changes() = 1;`,
    );
  }
});
coupons.forEach(([name, type, value, quantity, startsAt, endsAt, validDays, shards], i) => {
  sql.push(
    `INSERT OR IGNORE INTO coupons (id, name, discount_type, discount_value, quantity, issued_quantity, starts_at, ends_at, valid_days, shards, created_at) VALUES (${i + 1}, ${q(name)}, ${q(type)}, ${value}, ${quantity}, 0, ${startsAt}, ${endsAt}, ${validDays}, ${shards}, ${now});`,
  );
});

const dir = join(process.cwd(), ".wrangler", "seed");
mkdirSync(dir, { recursive: true });
const file = join(dir, "seed.sql");
writeFileSync(file, `${sql.join("\n")}\n`);
execFileSync("npx", ["wrangler", "d1", "execute", "DB", "--local", "--file", file], {
  stdio: ["ignore", "ignore", "inherit"],
  env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false", CI: "true" },
});
console.log(`seeded ${products.length} products, ${users.length} users, ${coupons.length} coupons (idempotent)`);
