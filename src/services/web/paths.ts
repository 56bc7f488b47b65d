import type { Role } from '../../db/schema.ts'

export function homePathFor(role: Role): string {
  switch (role) {
    case 'platform_admin':
      return '/admin/schools'
    case 'school_admin':
      return '/school'
    case 'teacher':
      return '/teacher/classes'
    case 'student':
      return '/student'
  }
}

/** Only same-site absolute paths: `next=//evil.example` or `next=https://…` would be an open redirect. */
export function safeNextPath(next: string | undefined): string | null {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) return null
  if (/[\u0000-\u001f]/.test(next)) return null
  return next
}

export interface NavItem {
  href: string
  label: string
}

const LIBRARY: NavItem = { href: '/library', label: 'nav.library' }

const NAV: Record<Role, NavItem[]> = {
  platform_admin: [{ href: '/admin/schools', label: 'nav.schools' }, { href: '/admin/textbooks', label: 'nav.textbooks' }, LIBRARY],
  school_admin: [
    { href: '/school', label: 'nav.school' },
    { href: '/school/teachers', label: 'nav.teachers' },
    { href: '/school/classes', label: 'nav.classes' },
    LIBRARY,
  ],
  teacher: [{ href: '/teacher/classes', label: 'nav.myClasses' }, LIBRARY],
  student: [{ href: '/student', label: 'nav.home' }, { href: '/chat', label: 'chat.nav' }, LIBRARY],
}

/** Navigation by role; the entry whose section the path is in is marked current. */
export function navFor(role: Role, path: string): (NavItem & { current: boolean })[] {
  const items = NAV[role]
  const pathname = path.split('?')[0]
  const best = items
    .filter((item) => pathname === item.href || pathname.startsWith(item.href + '/'))
    .sort((a, b) => b.href.length - a.href.length)[0]
  return items.map((item) => ({ ...item, current: item === best }))
}
