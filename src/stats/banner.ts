// The seed's scripts printed `echo "****** $(date) ******"` above every table; we print the same line,
// with the date in date(1)'s default format: "Sun Feb 15 15:10:58 JST 2015".

export function dateLikeDate1(at: Date, timeZone?: string): string {
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
