import type { FastifyPluginAsync, FastifyReply } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import { requireRole } from '../../plugins/auth.ts'
import { FormError } from '../../services/errors.ts'
import { createSchool, findSchool, listSchools, renameSchool, setSchoolDisabled } from '../../services/accounts/schools.ts'
import { createStaff, listStaff, resetStaffPassword } from '../../services/accounts/staff.ts'
import { openPassword, sealPassword } from '../../services/accounts/password-once.ts'
import type { RouteOptions } from '../index.ts'

// Shape only; the services enforce the real limits with field messages.
const SchoolBody = Type.Object({
  name: Type.Optional(Type.String({ maxLength: 1000 })),
  code: Type.Optional(Type.String({ maxLength: 50 })),
  _csrf: Type.Optional(Type.String()),
})
const RenameBody = Type.Object({
  name: Type.Optional(Type.String({ maxLength: 1000 })),
  _csrf: Type.Optional(Type.String()),
})
const StaffBody = Type.Object({
  displayName: Type.Optional(Type.String({ maxLength: 1000 })),
  username: Type.Optional(Type.String({ maxLength: 1000 })),
  _csrf: Type.Optional(Type.String()),
})
/** Ids in URLs are 1–9 digits; anything else does not match a route and is a 404. */
const SCHOOL = '/admin/schools/:id(^\\d{1,9}$)'
type IdParams = { id: string }

const emptyForms = { renameForm: null, adminForm: { displayName: '', username: '' } }

/** The platform admin's pages: schools and their school admins. */
const adminRoutes: FastifyPluginAsync<RouteOptions> = async (app, { database, config, secureCookies }) => {
  const { db } = database
  const keys = { secret: config.sessionSecret, secureCookies }
  const guard = { preHandler: requireRole('platform_admin') }
  const schoolAdmins = (schoolId: number) => ({ schoolId, role: 'school_admin' as const })

  app.get('/admin/schools', guard, async (_request, reply) => {
    return reply.page('admin/schools', { schools: await listSchools(db), form: { name: '', code: '' } })
  })

  app.post<{ Body: Static<typeof SchoolBody> }>('/admin/schools', { ...guard, schema: { body: SchoolBody } }, async (request, reply) => {
    const form = { name: request.body.name ?? '', code: request.body.code ?? '' }
    try {
      const school = await createSchool(db, form)
      return reply.redirect(`/admin/schools/${school.id}`, 303)
    } catch (err) {
      if (!(err instanceof FormError)) throw err
      return reply.page('admin/schools', { schools: await listSchools(db), form, fields: err.fields }, 422)
    }
  })

  /** The school page; the forms on it re-render here with their field messages. */
  const schoolPage = async (reply: FastifyReply, schoolId: number, forms: Record<string, unknown> = emptyForms, status = 200) => {
    const school = await findSchool(db, schoolId)
    const admins = await listStaff(db, schoolAdmins(school.id))
    const once = status === 200 ? openPassword(reply.request, reply, keys, admins.map((a) => a.id)) : null
    const shown = once ? { admin: admins.find((a) => a.id === once.userId), password: once.password } : null
    return reply.page('admin/school', { school, admins, shown, ...emptyForms, ...forms }, status)
  }

  app.get<{ Params: IdParams }>(SCHOOL, guard, async (request, reply) => schoolPage(reply, Number(request.params.id)))

  app.post<{ Params: IdParams; Body: Static<typeof RenameBody> }>(`${SCHOOL}/rename`, { ...guard, schema: { body: RenameBody } }, async (request, reply) => {
    const id = Number(request.params.id)
    const renameForm = { name: request.body.name ?? '' }
    try {
      await renameSchool(db, id, renameForm.name)
      return reply.redirect(`/admin/schools/${id}`, 303)
    } catch (err) {
      if (!(err instanceof FormError)) throw err
      return schoolPage(reply, id, { renameForm, renameFields: err.fields }, 422)
    }
  })

  for (const action of ['disable', 'enable'] as const) {
    app.post<{ Params: IdParams }>(`${SCHOOL}/${action}`, guard, async (request, reply) => {
      const id = Number(request.params.id)
      await db.transaction().execute((trx) => setSchoolDisabled(trx, id, action === 'disable'))
      return reply.redirect(`/admin/schools/${id}`, 303)
    })
  }

  app.post<{ Params: IdParams; Body: Static<typeof StaffBody> }>(`${SCHOOL}/admins`, { ...guard, schema: { body: StaffBody } }, async (request, reply) => {
    const school = await findSchool(db, Number(request.params.id))
    const adminForm = { displayName: request.body.displayName ?? '', username: request.body.username ?? '' }
    try {
      const admin = await createStaff(db, schoolAdmins(school.id), adminForm)
      sealPassword(reply, keys, admin.id, admin.password)
      return reply.redirect(`/admin/schools/${school.id}`, 303)
    } catch (err) {
      if (!(err instanceof FormError)) throw err
      return schoolPage(reply, school.id, { adminForm, adminFields: err.fields }, 422)
    }
  })

  app.post<{ Params: IdParams & { userId: string } }>(`${SCHOOL}/admins/:userId(^\\d{1,9}$)/reset-password`, guard, async (request, reply) => {
    const schoolId = Number(request.params.id)
    const { user, password } = await db.transaction().execute((trx) => resetStaffPassword(trx, schoolAdmins(schoolId), Number(request.params.userId)))
    sealPassword(reply, keys, user.id, password)
    return reply.redirect(`/admin/schools/${schoolId}`, 303)
  })
}
export default adminRoutes
