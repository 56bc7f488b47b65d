import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import { requireRole } from '../../plugins/auth.ts'
import { FormError } from '../../services/errors.ts'
import { schoolCounts } from '../../services/accounts/schools.ts'
import { createStaff, findStaff, listStaff, resetStaffPassword, setStaffDisabled, type StaffScope } from '../../services/accounts/staff.ts'
import { createSchoolClass, listSchoolClasses } from '../../services/accounts/classes.ts'
import { openPassword, sealPassword } from '../../services/accounts/password-once.ts'
import type { RouteOptions } from '../index.ts'

// Shape only; the services enforce the real limits with field messages.
const StaffBody = Type.Object({
  displayName: Type.Optional(Type.String({ maxLength: 1000 })),
  username: Type.Optional(Type.String({ maxLength: 1000 })),
  _csrf: Type.Optional(Type.String()),
})
const ClassBody = Type.Object({
  name: Type.Optional(Type.String({ maxLength: 1000 })),
  grade: Type.Optional(Type.String({ maxLength: 20 })),
  teacherId: Type.Optional(Type.String({ maxLength: 20 })),
  _csrf: Type.Optional(Type.String()),
})
type StaffBody = Static<typeof StaffBody>
type ClassBody = Static<typeof ClassBody>
/** Ids in URLs are 1–9 digits; anything else does not match a route and is a 404. */
type IdParams = { Params: { id: string } }

/** Everything here is limited to the signed-in school admin's own school. */
const schoolRoutes: FastifyPluginAsync<RouteOptions> = async (app, { database, config, secureCookies }) => {
  const { db } = database
  const keys = { secret: config.sessionSecret, secureCookies }
  const guard = { preHandler: requireRole('school_admin') }
  const teachersOf = (request: FastifyRequest): StaffScope => ({ schoolId: request.user!.schoolId!, role: 'teacher' })

  app.get('/school', guard, async (request, reply) => {
    const counts = await schoolCounts(db, request.user!.schoolId!)
    return reply.page('school/overview', { counts })
  })

  app.get('/school/teachers', guard, async (request, reply) => {
    const teachers = await listStaff(db, teachersOf(request))
    return reply.page('school/teachers', { teachers, form: { displayName: '', username: '' } })
  })

  app.post<{ Body: StaffBody }>('/school/teachers', { ...guard, schema: { body: StaffBody } }, async (request, reply) => {
    const form = { displayName: request.body.displayName ?? '', username: request.body.username ?? '' }
    try {
      const teacher = await createStaff(db, teachersOf(request), form)
      sealPassword(reply, keys, teacher.id, teacher.password)
      return reply.redirect(`/school/teachers/${teacher.id}`, 303)
    } catch (err) {
      if (!(err instanceof FormError)) throw err
      const teachers = await listStaff(db, teachersOf(request))
      return reply.page('school/teachers', { teachers, form, fields: err.fields }, 422)
    }
  })

  app.get<IdParams>('/school/teachers/:id(^\\d{1,9}$)', guard, async (request, reply) => {
    const teacher = await findStaff(db, teachersOf(request), Number(request.params.id))
    const classes = await listSchoolClasses(db, request.user!.schoolId!, { teacherId: teacher.id })
    const once = openPassword(request, reply, keys, [teacher.id])
    return reply.page('school/teacher', { teacher, classes, password: once?.password })
  })

  app.post<IdParams>('/school/teachers/:id(^\\d{1,9}$)/reset-password', guard, async (request, reply) => {
    const { user, password } = await db.transaction().execute((trx) => resetStaffPassword(trx, teachersOf(request), Number(request.params.id)))
    sealPassword(reply, keys, user.id, password)
    return reply.redirect(`/school/teachers/${user.id}`, 303)
  })

  for (const action of ['disable', 'enable'] as const) {
    app.post<IdParams>(`/school/teachers/:id(^\\d{1,9}$)/${action}`, guard, async (request, reply) => {
      const id = Number(request.params.id)
      await db.transaction().execute((trx) => setStaffDisabled(trx, teachersOf(request), id, action === 'disable'))
      return reply.redirect(`/school/teachers/${id}`, 303)
    })
  }

  const classesPage = async (request: FastifyRequest) => ({
    classes: await listSchoolClasses(db, request.user!.schoolId!),
    teachers: (await listStaff(db, teachersOf(request))).filter((teacher) => !teacher.disabled),
  })

  app.get('/school/classes', guard, async (request, reply) => {
    return reply.page('school/classes', { ...(await classesPage(request)), form: { name: '', grade: '', teacherId: '' } })
  })

  app.post<{ Body: ClassBody }>('/school/classes', { ...guard, schema: { body: ClassBody } }, async (request, reply) => {
    const form = { name: request.body.name ?? '', grade: request.body.grade ?? '', teacherId: request.body.teacherId ?? '' }
    try {
      await createSchoolClass(db, request.user!.schoolId!, form)
      return reply.redirect('/school/classes', 303)
    } catch (err) {
      if (!(err instanceof FormError)) throw err
      return reply.page('school/classes', { ...(await classesPage(request)), form, fields: err.fields, fieldParams: err.params }, 422)
    }
  })
}
export default schoolRoutes
