import type { FastifyPluginAsync } from 'fastify'
import { requireRole } from '../../plugins/auth.ts'
import { listConversations, MAX_QUESTION_LENGTH } from '../../services/chat/conversations.ts'
import { listSubjectNames, subjectNamer } from '../../services/library/catalog.ts'
import { homePathFor } from '../../services/web/paths.ts'
import { dateFormatter } from '../chat/views.ts'
import type { RouteOptions } from '../index.ts'

/** Conversations listed on the student's home page; the rest are on /chat. */
const RECENT_CONVERSATIONS = 5

const homeRoutes: FastifyPluginAsync<RouteOptions> = async (app, { database }) => {
  const { db } = database

  app.get('/', async (request, reply) => {
    return reply.redirect(request.user ? homePathFor(request.user.role) : '/login', 303)
  })

  // The student's home: ask a new question (the /chat form, grade preset), recent conversations, the library.
  app.get('/student', { preHandler: requireRole('student') }, async (request, reply) => {
    const user = request.user!
    const [subjects, recent] = await Promise.all([listSubjectNames(db), listConversations(db, user.id, 1, RECENT_CONVERSATIONS)])
    return reply.page('home/student', {
      form: { subject: '', grade: user.grade === null ? '' : String(user.grade), question: '' },
      context: null,
      subjects,
      subjectName: subjectNamer(subjects, request.lang),
      formatDate: dateFormatter(request.lang),
      conversations: recent.items,
      maxQuestion: MAX_QUESTION_LENGTH,
      wait: null,
      daily: null,
    })
  })
}
export default homeRoutes
