package org.xlnetedge.tokenizer

import java.io.File

/**
 * JVM parity check run by tests/test_tokenizer_parity.py: args = tokenizer.json, golden.json (cases written by
 * the Python host encoder: text, optional pair, seq_len, ids, mask, types; a null seq_len: encodeBucketed, the
 * length bucket the app picks, which the golden ids' length gives). Prints "ok N/M" and each mismatch; exits 1 on
 * any mismatch.
 */
fun main(args: Array<String>) {
    require(args.size == 2) { "usage: ParityMain tokenizer.json golden.json" }
    val tokenizer = XLNetTokenizer.load(File(args[0]))
    val cases = MiniJson.parse(File(args[1]).readText(Charsets.UTF_8)) as List<*>
    var ok = 0
    for ((index, raw) in cases.withIndex()) {
        val case = raw as Map<*, *>
        val seqLen = (case["seq_len"] as Double?)?.toInt()
        val got = if (seqLen == null) tokenizer.encodeBucketed(case["text"] as String, case["pair"] as String?)
        else tokenizer.encode(case["text"] as String, case["pair"] as String?, seqLen)
        val same = got.inputIds.toList() == ints(case["ids"]) &&
            got.attentionMask.toList() == ints(case["mask"]) &&
            got.tokenTypeIds.toList() == ints(case["types"])
        if (same) ok++ else println("mismatch #$index: expected ${ints(case["ids"])} got ${got.inputIds.toList()}")
    }
    println("ok $ok/${cases.size}")
    if (ok != cases.size) System.exit(1)
}

private fun ints(raw: Any?): List<Int> = (raw as List<*>).map { (it as Double).toInt() }
