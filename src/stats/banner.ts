// The seed's scripts printed `echo "****** $(date) ******"` above every table; we print the same line,
// with the date in date(1)'s default format: "Sun Feb 15 15:10:58 JST 2015".

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const two = (n: number) => String(n).padStart(2, '0');

/** The local zone as date(1) would name UTC, else as an offset ("GMT+9", "GMT+5:30"), without ICU. */
function localZoneName(at: Date): string {
  const east = -at.getTimezoneOffset();
  if (east === 0) return 'UTC';
  const hours = Math.floor(Math.abs(east) / 60);
  const minutes = Math.abs(east) % 60;
  return `GMT${east > 0 ? '+' : '-'}${hours}${minutes ? `:${two(minutes)}` : ''}`;
}

/**
 * In the local zone this is plain arithmetic: building an Intl.DateTimeFormat loads ICU's data and
 * costs ~20 ms, a tenth of a one-shot `lab stat xact`. Another zone (tests) goes through Intl.
 */
export function dateLikeDate1(at: Date, timeZone?: string): string {
  if (timeZone === undefined) {
    const day = String(at.getDate()).padStart(2, ' ');
    const time = `${two(at.getHours())}:${two(at.getMinutes())}:${two(at.getSeconds())}`;
    return `${DAYS[at.getDay()]} ${MONTHS[at.getMonth()]} ${day} ${time} ${localZoneName(at)} ${at.getFullYear()}`;
  }
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-US', {
      timeZone,
      weekday: 'short',
      month: 'short',
      day: 'numeric',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      hour12: false,
      year: 'numeric',
      timeZoneName: 'short',
    })
      .formatToParts(at)
      .map((part) => [part.type, part.value]),
  ) as Record<string, string>;
  // Intl writes midnight as "24" with hour12 false in some ICU versions.
  const hour = parts.hour === '24' ? '00' : parts.hour;
  const day = (parts.day ?? '').padStart(2, ' ');
  return `${parts.weekday} ${parts.month} ${day} ${hour}:${parts.minute}:${parts.second} ${parts.timeZoneName} ${parts.year}`;
}

export function banner(at: Date): string {
  return `****** ${dateLikeDate1(at)} ******`;
}
