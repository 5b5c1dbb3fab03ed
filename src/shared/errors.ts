import type { ContentfulStatusCode } from "hono/utils/http-status";

/**
 * The one table of error codes: code -> HTTP status and the default Korean detail.
 * Every failure the API reports goes through `AppError` and this table, so the
 * contract in docs/ARCHITECTURE.md §4 lives in exactly one place.
 */
export const ERROR_TABLE = {
  INVALID_USER_ID: [400, "유효하지 않은 사용자 ID입니다."],
  INVALID_PRODUCT_ID: [400, "유효하지 않은 상품 ID입니다."],
  INVALID_COUPON_ID: [400, "유효하지 않은 쿠폰 ID입니다."],
  INVALID_ORDER_ID: [400, "유효하지 않은 주문 ID입니다."],
  INVALID_QUANTITY: [400, "수량은 1 이상이어야 합니다."],
  INVALID_CHARGE_AMOUNT: [400, "충전 금액은 0 보다 커야 합니다."],
  VALIDATION_FAILED: [400, "요청 값이 올바르지 않습니다."],
  UNAUTHORIZED: [401, "인증 정보가 없거나 올바르지 않습니다."],
  FORBIDDEN: [403, "이 요청을 수행할 권한이 없습니다."],
  USER_NOT_FOUND: [404, "사용자를 찾을 수 없습니다."],
  PRODUCT_NOT_FOUND: [404, "상품을 찾을 수 없습니다."],
  COUPON_NOT_FOUND: [404, "쿠폰을 찾을 수 없습니다."],
  ORDER_NOT_FOUND: [404, "주문을 찾을 수 없습니다."],
  NOT_FOUND: [404, "요청한 경로가 존재하지 않습니다."],
  DEAD_LETTER_NOT_FOUND: [404, "데드레터를 찾을 수 없습니다."],
  METHOD_NOT_ALLOWED: [405, "허용되지 않은 HTTP 메서드입니다."],
  CHARGE_LIMIT_EXCEEDED: [409, "1회 최대 충전 금액을 초과했습니다."],
  BALANCE_LIMIT_EXCEEDED: [409, "누적 충전 가능 금액을 초과했습니다."],
  INSUFFICIENT_STOCK: [409, "재고가 부족합니다."],
  STOCK_SHARDS_CANNOT_DECREASE: [409, "재고 샤드 수는 줄일 수 없습니다. (남은 예약이 갈 곳을 잃습니다)"],
  COUPON_SOLD_OUT: [409, "쿠폰이 모두 소진되었습니다."],
  COUPON_ALREADY_ISSUED: [409, "이미 발급받은 쿠폰입니다."],
  COUPON_NOT_ISSUABLE: [409, "쿠폰 발급 기간이 아닙니다."],
  COUPON_NOT_OWNED: [409, "해당 쿠폰을 보유하고 있지 않습니다."],
  COUPON_EXPIRED: [409, "쿠폰 유효기간이 지났거나 아직 유효하지 않습니다."],
  COUPON_ALREADY_USED: [409, "이미 사용된 쿠폰입니다."],
  COUPON_QUANTITY_BELOW_ISSUED: [409, "이미 발급된 수량보다 적게 설정할 수 없습니다."],
  COUPON_SHARDS_LOCKED: [409, "쿠폰 샤드 수는 발급 기간 시작 전, 발급 내역이 없을 때에만 늘릴 수 있습니다."],
  ORDER_NOT_PAYABLE: [409, "결제가 불가능한 주문 상태입니다."],
  INSUFFICIENT_BALANCE: [409, "포인트가 부족합니다."],
  ORDER_NOT_CANCELLABLE: [409, "취소할 수 없는 주문 상태입니다."],
  IDEMPOTENCY_KEY_IN_PROGRESS: [409, "같은 Idempotency-Key 의 요청이 아직 처리 중입니다. 잠시 후 다시 시도해 주세요."],
  IDEMPOTENCY_KEY_REUSED: [409, "이 Idempotency-Key 는 다른 요청에 이미 사용되었습니다."],
  PAYLOAD_TOO_LARGE: [413, "요청 본문이 너무 큽니다. (최대 64KiB)"],
  UNSUPPORTED_MEDIA_TYPE: [415, "Content-Type 은 application/json 이어야 합니다."],
  RATE_LIMITED: [429, "요청이 너무 많습니다. 잠시 후 다시 시도해 주세요."],
  INTERNAL_ERROR: [500, "서버 내부 오류가 발생했습니다."],
  SERVICE_UNAVAILABLE: [503, "일시적으로 요청을 처리할 수 없습니다. 잠시 후 다시 시도해 주세요."],
  // A deployed environment without JWT_SECRET / ADMIN_TOKEN: refused rather than served unauthenticated (which secret is in the log, not here).
  MISCONFIGURED: [503, "서버 설정이 완료되지 않아 요청을 처리할 수 없습니다. 운영자에게 문의해 주세요."],
} as const satisfies Record<string, readonly [ContentfulStatusCode, string]>;

export type ErrorCode = keyof typeof ERROR_TABLE;

/** The generic `message` of the envelope, by HTTP status (docs/ARCHITECTURE.md §4). */
export const STATUS_MESSAGES: Record<number, string> = {
  200: "요청이 정상적으로 처리되었습니다.",
  201: "리소스가 성공적으로 생성되었습니다.",
  400: "잘못된 요청입니다.",
  401: "인증이 필요합니다.",
  403: "권한이 없습니다.",
  404: "요청한 리소스를 찾을 수 없습니다.",
  405: "허용되지 않은 메서드입니다.",
  409: "비즈니스 정책을 위반한 요청입니다.",
  413: "요청 본문이 너무 큽니다.",
  415: "지원하지 않는 미디어 타입입니다.",
  429: "요청이 너무 많습니다.",
  500: "서버 내부 오류가 발생했습니다.",
  503: "서비스를 일시적으로 사용할 수 없습니다.",
};

/**
 * The single error type of the application. Throw it anywhere in a request;
 * the app's `onError` turns it into the error envelope.
 */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly detail: string;
  readonly headers: Record<string, string> | undefined;

  constructor(code: ErrorCode, detail?: string, headers?: Record<string, string>) {
    const text = detail ?? ERROR_TABLE[code][1];
    // A business refusal needs no stack: capturing one was 3.6 % of a coupon storm's CPU (docs/PERFORMANCE.md).
    // 5xx codes keep theirs for the error log.
    const limit = Error.stackTraceLimit;
    if (ERROR_TABLE[code][0] < 500) Error.stackTraceLimit = 0;
    try {
      super(`${code}: ${text}`);
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.name = "AppError";
    this.code = code;
    this.detail = text;
    this.headers = headers;
  }

  get status(): ContentfulStatusCode {
    return ERROR_TABLE[this.code][0];
  }
}

/** True when `value` is one of the codes in the table (used to map DO outcomes). */
export function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(ERROR_TABLE, value);
}
