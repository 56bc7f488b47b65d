import type { FastifyPluginAsync, FastifyReply } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import { requireRole } from '../../plugins/auth.ts'
import { FormError } from '../../services/errors.ts'
import { createClass, findClassForViewer, listStudentsOfClass, parseId, type ClassDetails } from '../../services/classes/classes.ts'
import { listSchoolClasses } from '../../services/accounts/classes.ts'
import { addStudents, resetClassPins, resetStudentPin, MAX_NAMES_PER_PASTE, MAX_STUDENT_NAME } from '../../services/classes/students.ts'
import { loginCards, openPins, sealPins, sheetsOf } from '../../services/classes/cards.ts'
import type { RouteOptions } from '../index.ts'

// Shapes only; the business limits (100 names, 100 characters) are checked by the services,
// which answer with a localized message instead of a bare 400.
const ClassBody = Type.Object({
  name: Type.Optional(Type.String({ maxLength: 1000 })),
  grade: Type.Optional(Type.String({ maxLength: 20 })),
  _csrf: Type.Optional(Type.String()),
})
const NamesBody = Type.Object({ names: Type.Optional(Type.String({ maxLength: 50_000 })), _csrf: Type.Optional(Type.String()) })
const ConfirmBody = Type.Object({ confirm: Type.Optional(Type.String({ maxLength: 20 })), _csrf: Type.Optional(Type.String()) })
type IdParams = { Params: { id: string } }

const classUrl = (id: number) => `/teacher/classes/${id}`
const cardsUrl = (id: number) => `/teacher/classes/${id}/cards`

const teacherRoutes: FastifyPluginAsync<RouteOptions> = async (app, { config, database, secureCookies }) => {
  const { db } = database
  const teacherOnly = { preHandler: requireRole('teacher') }
  // School admins manage every class of their school; the services check which class.
  const classManagers = { preHandler: requireRole('teacher', 'school_admin') }

  const showClasses = async (reply: FastifyReply, form = { name: '', grade: '' }, error?: FormError) => {
    const teacher = reply.request.user!
    const classes = await listSchoolClasses(db, teacher.schoolId!, { teacherId: teacher.id })
    return reply.page('teacher/classes', { classes, form, fields: error?.fields, params: error?.params }, error ? 422 : 200)
  }
  const showClass = async (reply: FastifyReply, klass: ClassDetails, names = '', error?: FormError) => {
    const students = await listStudentsOfClass(db, klass.id)
    const limits = { maxNames: MAX_NAMES_PER_PASTE, maxName: MAX_STUDENT_NAME }
    return reply.page('teacher/class', { klass, students, names, limits, fields: error?.fields, params: error?.params }, error ? 422 : 200)
  }

  app.get('/teacher/classes', teacherOnly, async (_request, reply) => showClasses(reply))

  app.post<{ Body: Static<typeof ClassBody> }>('/teacher/classes', { ...teacherOnly, schema: { body: ClassBody } }, async (request, reply) => {
    const form = { name: request.body.name ?? '', grade: request.body.grade ?? '' }
    try {
      const klass = await createClass(db, request.user!, form)
      return reply.redirect(classUrl(klass.id), 303)
    } catch (err) {
      if (err instanceof FormError) return showClasses(reply, form, err)
      throw err
    }
  })

  app.get<IdParams>('/teacher/classes/:id', classManagers, async (request, reply) => {
    return showClass(reply, await findClassForViewer(db, request.user!, parseId(request.params.id)))
  })

  app.post<IdParams & { Body: Static<typeof NamesBody> }>(
    '/teacher/classes/:id/students',
    { ...classManagers, schema: { body: NamesBody } },
    async (request, reply) => {
      const klass = await findClassForViewer(db, request.user!, parseId(request.params.id))
      const names = request.body.names ?? ''
      try {
        const pins = await addStudents(db, klass, names)
        sealPins(reply, config.sessionSecret, secureCookies, klass.id, pins)
        return reply.redirect(cardsUrl(klass.id), 303)
      } catch (err) {
        if (err instanceof FormError) return showClass(reply, klass, names, err)
        throw err
      }
    },
  )

  const showCards = async (reply: FastifyReply, klass: ClassDetails, error?: FormError) => {
    const pins = error ? null : openPins(reply.request, reply, config.sessionSecret, klass.id)
    const cards = pins ? await loginCards(db, klass, pins) : []
    // Without PINs to show, the page offers new ones for the whole class instead.
    const studentCount = cards.length ? cards.length : (await listStudentsOfClass(db, klass.id)).length
    const data = { klass, sheets: cards.length ? sheetsOf(cards) : null, studentCount, fields: error?.fields, printCss: true }
    return reply.page('teacher/cards', data, error ? 422 : 200)
  }

  app.get<IdParams>('/teacher/classes/:id/cards', classManagers, async (request, reply) => {
    return showCards(reply, await findClassForViewer(db, request.user!, parseId(request.params.id)))
  })

  app.post<IdParams & { Body: Static<typeof ConfirmBody> }>(
    '/teacher/classes/:id/reset-pins',
    { ...classManagers, schema: { body: ConfirmBody } },
    async (request, reply) => {
      const klass = await findClassForViewer(db, request.user!, parseId(request.params.id))
      if (!request.body.confirm) return showCards(reply, klass, new FormError({ confirm: 'teacher.errors.confirmRequired' }))
      sealPins(reply, config.sessionSecret, secureCookies, klass.id, await resetClassPins(db, klass))
      return reply.redirect(cardsUrl(klass.id), 303)
    },
  )

  app.post<IdParams>('/teacher/students/:id/reset-pin', classManagers, async (request, reply) => {
    const { klass, pins } = await resetStudentPin(db, request.user!, parseId(request.params.id))
    sealPins(reply, config.sessionSecret, secureCookies, klass.id, pins)
    return reply.redirect(cardsUrl(klass.id), 303)
  })
}
export default teacherRoutes
