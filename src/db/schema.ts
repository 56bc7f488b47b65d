import type { ColumnType, Generated } from 'kysely'

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>

export type Role = 'platform_admin' | 'school_admin' | 'teacher' | 'student'
export const ROLES: readonly Role[] = ['platform_admin', 'school_admin', 'teacher', 'student']

export interface SchoolTable {
  id: Generated<number>
  code: number
  name: string
  disabled_at: Timestamp | null
  created_at: Timestamp
}

export interface UserTable {
  id: Generated<number>
  /** null only for platform admins. */
  school_id: number | null
  role: Role
  username: string
  display_name: string
  password_hash: string
  grade: number | null
  /** Students belong to one class. */
  class_id: number | null
  disabled_at: Timestamp | null
  created_at: Timestamp
}

export interface ClassTable {
  id: Generated<number>
  school_id: number
  teacher_id: number | null
  name: string
  grade: number
  created_at: Timestamp
}

export interface SessionTable {
  /** SHA-256 of the token, hex. The token itself is never stored. */
  id: string
  user_id: number
  expires_at: Timestamp
  /** Students on shared lab PCs: browser-session cookie and a short idle timeout. */
  idle_timeout: boolean
  created_at: Timestamp
}

export interface LoginFailureTable {
  id: Generated<number>
  key: string
  at: Timestamp
}

export interface DB {
  schools: SchoolTable
  users: UserTable
  classes: ClassTable
  sessions: SessionTable
  login_failures: LoginFailureTable
}
