"""The journey service: follows each renewal through both tools (Meds and SM), from the request on,
and says where it is and whose tool failed it or holds it up. It belongs to neither tool."""
