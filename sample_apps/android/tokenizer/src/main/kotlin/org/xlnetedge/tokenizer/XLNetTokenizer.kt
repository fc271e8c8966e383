package org.xlnetedge.tokenizer

import java.io.File

/**
 * Model inputs for one text: each array has the length it was encoded at (XLNet pads on the LEFT); with
 * [XLNetTokenizer.encodeBucketed] that length is the bucket, i.e. which method/signature of the model runs it.
 */
class Encoded(val inputIds: IntArray, val attentionMask: IntArray, val tokenTypeIds: IntArray)

/**
 * XLNet tokenizer for the Android app, pure Kotlin (no Android imports), reading the bundle's tokenizer.json.
 *
 * It reproduces the host encoder (toolkit.tokenizer.XLNetTextEncoder) id for id. Normalisation is table
 * driven (tokenizer.json carries NFKD + mark stripping as the host computes them), so results do not depend
 * on the phone's Unicode version; java.text.Normalizer is deliberately not used. Text is handled as code
 * points throughout because the tables and the Viterbi work on whole characters, not UTF-16 units.
 */
class XLNetTokenizer(spec: Map<String, Any?>) {
    private val pieceIds = HashMap<String, Int>()
    private val scores: DoubleArray
    private val maxPieceLen: Int
    private val unkId: Int
    private val unkScore: Double
    private val specials: List<Special>
    private val sepId: Int
    private val clsId: Int
    private val padId: Int
    private val replace: List<Pair<String, String>>
    private val decompose = HashMap<Int, String>()
    private val charsmap = HashMap<Int, String>()
    private val extend: Ranges
    private val control: Ranges
    private val prepend: Ranges
    private val wholeMaxBytes: Int
    private val whitespace: Ranges
    private val metaspace: Int
    private val typeA: Int
    private val typeB: Int
    private val typeCls: Int
    private val typePad: Int
    /** The longest length bucket (tokenizer.json "sequence_length"). */
    val sequenceLength: Int
    /** The length buckets, ascending (tokenizer.json "sequence_lengths"; [sequenceLength] when it has none). */
    val sequenceLengths: List<Int>

    private class Special(val content: String, val id: Int, val lstrip: Boolean, val rstrip: Boolean)

    private class Ranges(raw: Any?) {
        private val lo: IntArray
        private val hi: IntArray

        init {
            val list = raw as List<*>
            lo = IntArray(list.size) { ((list[it] as List<*>)[0] as Double).toInt() }
            hi = IntArray(list.size) { ((list[it] as List<*>)[1] as Double).toInt() }
        }

        fun contains(cp: Int): Boolean {
            var a = 0
            var b = lo.size - 1
            while (a <= b) {
                val mid = (a + b) ushr 1
                when {
                    cp < lo[mid] -> b = mid - 1
                    cp > hi[mid] -> a = mid + 1
                    else -> return true
                }
            }
            return false
        }
    }

    init {
        val format = spec["format"]
        val version = (spec["format_version"] as? Double)?.toInt()
        require(format == FORMAT && version == FORMAT_VERSION) {
            "tokenizer.json is ($format, $version), this app reads ($FORMAT, $FORMAT_VERSION): re-export the bundle"
        }
        val model = spec.obj("model")
        val pieces = model["pieces"] as List<*>
        scores = DoubleArray(pieces.size)
        var longest = 1
        for ((i, entry) in pieces.withIndex()) {
            val pair = entry as List<*>
            val piece = pair[0] as String
            pieceIds[piece] = i
            scores[i] = pair[1] as Double
            longest = maxOf(longest, piece.codePointCount(0, piece.length))
        }
        maxPieceLen = longest
        unkId = model.int("unk_id")
        unkScore = model["unk_score"] as Double
        specials = (spec["special_tokens"] as List<*>).map {
            val t = it as Map<*, *>
            Special(t["content"] as String, (t["id"] as Double).toInt(), t["lstrip"] as Boolean, t["rstrip"] as Boolean)
        }.sortedByDescending { it.content.length }
        val ids = spec.obj("special_ids")
        sepId = ids.int("sep")
        clsId = ids.int("cls")
        padId = ids.int("pad")
        val norm = spec.obj("normalizer")
        replace = (norm["replace"] as List<*>).map { val p = it as List<*>; Pair(p[0] as String, p[1] as String) }
        for ((k, v) in norm.obj("decompose").obj("map")) decompose[k.codePointAt(0)] = v as String
        val cm = norm.obj("charsmap")
        for ((k, v) in cm.obj("map")) if (k.codePointCount(0, k.length) == 1) charsmap[k.codePointAt(0)] = v as String
        extend = Ranges(cm["grapheme_extend"])
        control = Ranges(cm["grapheme_control"])
        prepend = Ranges(cm["grapheme_prepend"])
        wholeMaxBytes = cm.int("whole_grapheme_max_utf8_bytes")
        whitespace = Ranges(norm["whitespace"])
        metaspace = (spec.obj("pre_tokenizer")["metaspace"] as String).codePointAt(0)
        val types = spec.obj("template").obj("type_ids")
        typeA = types.int("a")
        typeB = types.int("b")
        typeCls = types.int("cls")
        typePad = types.int("pad")
        sequenceLength = spec.int("sequence_length")
        // Length buckets: the model has one method/signature per length; a text runs at the shortest that holds it.
        val lengths = (spec["sequence_lengths"] as? List<*>)?.map { (it as Double).toInt() }
        sequenceLengths = if (lengths.isNullOrEmpty()) listOf(sequenceLength) else lengths.sorted()
    }

    /** Token ids of one text, without XLNet's special tokens around it. */
    fun textIds(text: String): List<Int> {
        val ids = ArrayList<Int>()
        var start = 0
        var i = 0
        while (i < text.length) {
            val hit = specials.firstOrNull { text.startsWith(it.content, i) }
            if (hit == null) { i++; continue }
            var cut = i
            if (hit.lstrip) while (cut > start && whitespace.contains(text[cut - 1].toInt())) cut--
            segmentIds(text.substring(start, cut), ids)
            ids.add(hit.id)
            i += hit.content.length
            if (hit.rstrip) while (i < text.length && whitespace.contains(text[i].toInt())) i++
            start = i
        }
        segmentIds(text.substring(start), ids)
        return ids
    }

    /** XLNet inputs: [pad.. A <sep> (B <sep>) <cls>], types 0/1, 2 for <cls>, 3 for padding. */
    fun encode(text: String, pair: String? = null, seqLen: Int = sequenceLength): Encoded =
        assemble(textIds(text), if (pair == null) null else textIds(pair), seqLen)

    /**
     * [encode] at the shortest length bucket that holds every token of the text (specials included: A + 2, or
     * A + B + 3 for a pair); a longer text is cut to the longest bucket. The length of the arrays says which
     * method/signature to run (forward_<length>).
     */
    fun encodeBucketed(text: String, pair: String? = null): Encoded {
        val a = textIds(text)
        val b = if (pair == null) null else textIds(pair)
        val tokens = a.size + (if (b == null) 2 else b.size + 3)
        return assemble(a, b, pickLength(tokens, sequenceLengths))
    }

    private fun assemble(a: List<Int>, b: List<Int>?, seqLen: Int): Encoded {
        val budget = seqLen - (if (b == null) 2 else 3)
        require(budget >= 0) { "seqLen=$seqLen is too short for XLNet's special tokens" }
        val (nA, nB) = truncatedLengths(a.size, b?.size, budget)
        val ids = ArrayList<Int>(seqLen)
        val types = ArrayList<Int>(seqLen)
        ids.addAll(a.subList(0, nA)); ids.add(sepId)
        repeat(nA + 1) { types.add(typeA) }
        if (b != null) {
            ids.addAll(b.subList(0, nB)); ids.add(sepId)
            repeat(nB + 1) { types.add(typeB) }
        }
        ids.add(clsId); types.add(typeCls)
        val pad = seqLen - ids.size
        val outIds = IntArray(seqLen) { if (it < pad) padId else ids[it - pad] }
        val outMask = IntArray(seqLen) { if (it < pad) 0 else 1 }
        val outTypes = IntArray(seqLen) { if (it < pad) typePad else types[it - pad] }
        return Encoded(outIds, outMask, outTypes)
    }

    private fun segmentIds(segment: String, out: MutableList<Int>) {
        if (segment.length == 0) return
        for (word in splitWords(normalize(segment))) {
            for (part in metaspaceParts(word)) viterbi(part, out)
        }
    }

    private fun normalize(raw: String): IntArray {
        var text = raw
        for ((src, dst) in replace) text = text.replace(src, dst)
        val decomposed = StringBuilder()
        var k = 0
        while (k < text.length) {
            val cp = text.codePointAt(k)
            val mapped = decompose[cp]
            if (mapped != null) decomposed.append(mapped) else decomposed.appendCodePoint(cp)
            k += Character.charCount(cp)
        }
        val cps = decomposed.toString().codePoints().toArray()
        val out = StringBuilder()
        var i = 0
        while (i < cps.size) {
            val j = graphemeEnd(cps, i)
            var bytes = 0
            for (t in i until j) bytes += utf8Length(cps[t])
            val whole = charsmap[cps[i]]
            if (bytes <= wholeMaxBytes && whole != null) {
                out.append(whole)  // a short grapheme takes its first character's rule as a whole
            } else {
                for (t in i until j) {
                    val rule = charsmap[cps[t]]
                    if (rule != null) out.append(rule) else out.appendCodePoint(cps[t])
                }
            }
            i = j
        }
        return out.toString().codePoints().toArray()
    }

    private fun breaksBefore(cp: Int) = cp == CR || cp == LF || control.contains(cp)

    private fun graphemeEnd(cps: IntArray, i: Int): Int {
        if (cps[i] == CR) return if (i + 1 < cps.size && cps[i + 1] == LF) i + 2 else i + 1
        if (breaksBefore(cps[i])) return i + 1
        var j = i + 1
        while (prepend.contains(cps[j - 1]) && j < cps.size && !breaksBefore(cps[j])) j++
        while (j < cps.size && extend.contains(cps[j])) j++
        return j
    }

    private fun splitWords(cps: IntArray): List<IntArray> {
        val words = ArrayList<IntArray>()
        var start = -1
        for (i in 0..cps.size) {
            val isSpace = i == cps.size || whitespace.contains(cps[i])
            if (isSpace && start >= 0) { words.add(cps.copyOfRange(start, i)); start = -1 }
            if (!isSpace && start < 0) start = i
        }
        return words
    }

    private fun metaspaceParts(word: IntArray): List<IntArray> {
        val w = if (word[0] == metaspace) word else intArrayOf(metaspace) + word
        val parts = ArrayList<IntArray>()
        var start = 0
        for (k in 1 until w.size) {
            if (w[k] == metaspace) { parts.add(w.copyOfRange(start, k)); start = k }
        }
        parts.add(w.copyOfRange(start, w.size))
        return parts
    }

    /** Best-scoring segmentation (ties: first found, shorter first); unknown characters fuse into one unk. */
    private fun viterbi(cps: IntArray, out: MutableList<Int>) {
        val n = cps.size
        val best = DoubleArray(n + 1)
        val backStart = IntArray(n + 1) { -1 }
        val backId = IntArray(n + 1)
        for (start in 0 until n) {
            var hasSingle = false
            for (end in start + 1..minOf(n, start + maxPieceLen)) {
                val id = pieceIds[String(cps, start, end - start)] ?: continue
                val score = best[start] + scores[id]
                if (backStart[end] < 0 || score > best[end]) {
                    best[end] = score; backStart[end] = start; backId[end] = id
                }
                if (end == start + 1) hasSingle = true
            }
            if (!hasSingle) {
                val score = best[start] + unkScore
                if (backStart[start + 1] < 0 || score > best[start + 1]) {
                    best[start + 1] = score; backStart[start + 1] = start; backId[start + 1] = unkId
                }
            }
        }
        val reversed = ArrayList<Int>()
        var end = n
        var inUnkRun = false
        while (end > 0) {
            val id = backId[end]
            if (id == unkId) {
                if (!inUnkRun) reversed.add(unkId)
                inUnkRun = true
            } else {
                reversed.add(id)
                inUnkRun = false
            }
            end = backStart[end]
        }
        for (k in reversed.indices.reversed()) out.add(reversed[k])
    }

    companion object {
        const val FORMAT = "xlnet-edge-tokenizer"
        const val FORMAT_VERSION = 1
        private const val CR = 0x0D
        private const val LF = 0x0A

        fun load(file: File): XLNetTokenizer {
            @Suppress("UNCHECKED_CAST")
            return XLNetTokenizer(MiniJson.parse(file.readText(Charsets.UTF_8)) as Map<String, Any?>)
        }

        /** The shortest of [lengths] (ascending) holding [tokens] tokens; the longest when none does. */
        fun pickLength(tokens: Int, lengths: List<Int>): Int = lengths.firstOrNull { it >= tokens } ?: lengths.last()

        /** Cut from the end; pairs: the shorter keeps at most budget / 2 (A counts as shorter on ties). */
        fun truncatedLengths(lenA: Int, lenB: Int?, budget: Int): Pair<Int, Int> {
            if (lenB == null) return Pair(minOf(lenA, budget), 0)
            if (lenA + lenB <= budget) return Pair(lenA, lenB)
            if (lenA > lenB) {
                val b = minOf(lenB, budget / 2)
                return Pair(minOf(lenA, budget - b), b)
            }
            val a = minOf(lenA, budget / 2)
            return Pair(a, minOf(lenB, budget - a))
        }

        private fun utf8Length(cp: Int) = when {
            cp < 0x80 -> 1
            cp < 0x800 -> 2
            cp < 0x10000 -> 3
            else -> 4
        }

        @Suppress("UNCHECKED_CAST")
        private fun Map<*, *>.obj(key: String) = this[key] as Map<String, Any?>

        private fun Map<*, *>.int(key: String) = (this[key] as Double).toInt()
    }
}
